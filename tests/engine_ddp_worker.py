"""Tiny models, data and step functions for tests/test_engine.py, and the script its DDP test launches:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/engine_ddp_worker.py WORK OUT [--bad-at S]

Rank 0 saves the final weights to OUT/weights.safetensors; every rank writes OUT/rank-<r>.json (threads, world).
--bad-at S: rank 1 alone returns a NaN loss at step S (the engine must stop every rank).
"""

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from edad_core.engine import Engine, TrainConfig

N_EXAMPLES = 32


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(4, 16)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(self.drop(torch.tanh(self.norm(self.fc1(x))))).squeeze(-1)


class ToyData(torch.utils.data.Dataset):
    """Regression examples with a token length each (to check token counting); records what was loaded."""

    def __init__(self, n: int = N_EXAMPLES):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
        self.lengths = (torch.arange(n) % 7 + 1).tolist()
        self.loaded = []

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.loaded.append(i)
        return {"x": self.x[i], "y": self.y[i], "length": self.lengths[i]}


def collate(examples):
    lengths = torch.tensor([e["length"] for e in examples])
    return {"x": torch.stack([e["x"] for e in examples]), "y": torch.stack([e["y"] for e in examples]),
            "attention_mask": (torch.arange(int(lengths.max())) < lengths[:, None]).long()}


def make_models(seed: int, dropout: float = 0.0) -> dict[str, nn.Module]:
    """Trainable nets initialised from `seed`; the frozen model is always the same (like a pretrained one)."""
    torch.manual_seed(0)
    frozen = nn.Linear(4, 4)
    torch.manual_seed(seed)
    return {"net": TinyNet(dropout), "aux": TinyNet(dropout), "frozen": frozen}


def plain_step(models, batch, ctx):
    """Deterministic: the same on any number of processes."""
    x = batch["x"] + 0.1 * models["frozen"](batch["x"])
    loss_net = ((models["net"](x) - batch["y"]) ** 2).mean()
    loss_aux = ((models["aux"](x) - 2 * batch["y"]) ** 2).mean()
    return {"net": loss_net, "aux": loss_aux}, {"abs_y": batch["y"].abs().mean()}


def config(work: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(output_dir=str(out), work_dir=str(work), lr={"net": 1e-2, "aux": 3e-3}, epochs=3, batch_size=8,
                    per_device_batch_size=2, checkpoint_every=5, log_every=3, seed=7)
    return TrainConfig(**{**settings, **overrides})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("work")
    parser.add_argument("out")
    parser.add_argument("--bad-at", type=int)
    args = parser.parse_args()

    def step_fn(models, batch, ctx):
        losses, metrics = plain_step(models, batch, ctx)
        if ctx.step == args.bad_at and ctx.rank == 1:
            losses["aux"] = losses["aux"] * float("nan")
        return losses, metrics

    models = make_models(seed=1 + int(os.environ["RANK"]))  # differs per rank: DDP must broadcast rank 0's
    with Engine(config(Path(args.work), Path(args.out)), models, ["net", "aux"], ToyData(), collate, step_fn) as engine:
        engine.train()
        out = Path(args.out)
        (out / f"rank-{engine.dist.rank}.json").write_text(json.dumps(
            {"threads": torch.get_num_threads(), "world_size": engine.dist.world_size}))
        if engine.is_main:
            tensors = {f"{n}.{k}": v for n in ("net", "aux") for k, v in engine.unwrap(n).state_dict().items()}
            save_file(tensors, out / "weights.safetensors")


if __name__ == "__main__":
    main()
