"""A training run's work folder: the fingerprint that claims it, the checkpoints in it, and the loop state they carry.

    claim_work_dir(work, fingerprint)             # rank 0, first: checkpoints of another run are removed
    save_checkpoint(work, state, rank=.., world_size=.., rng=rng_state(gen, dev), tensors=.., trainer=..)
    ckpt = load_newest(work, ["student"], rank=.., world_size=.., device=..)   # a Checkpoint, or None: step 0
    prune(work, keep=1)

work_dir holds `run.json` (the fingerprint), `checkpoint-<step>/` folders and the engine's `metrics.jsonl`.
A checkpoint folder is written under a temp name, fsynced and renamed, so it is complete or absent:
`model-<name>.safetensors` (the trainable parameters), `trainer.pt` (optimizer, scheduler and GradScaler states),
`rng-<rank>.pt` (python, numpy, torch, CUDA and ctx-generator states of each rank) and `state.json` (the
LoopState and the world size); all load with torch.load(weights_only=True).

A checkpoint is deleted only when it is known to be stale or damaged:
- stale: run.json differs from the run's fingerprint (the changed keys are logged, e.g.
  `train.lr: 0.0001 -> 0.0002`), or is absent or unparsable beside old files: the whole folder goes and the run
  starts over; older than the newest two while a run is in progress; all but the last (or all) when it ends.
- damaged: a file is missing or does not parse (truncated, empty). The previous checkpoint is tried; the
  damaged ones go once an older one loads, or all of them when none does (the run starts over, saying so).
- anything else (an OSError while reading: an I/O error, a full disk, an interrupted read, a permission) says
  nothing about the files: CheckpointUnavailable is raised and every checkpoint stays. Failing is chosen over
  retrying: nothing has been computed yet at that point, and storage that fails once usually needs a look; the
  rerun (or Snakemake's `retries`) resumes from the same checkpoint.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

from edad_core.distributed import barrier
from edad_core.files import atomic_write_json, atomic_write_text, fsync_dir, fsync_tree, sha256_file

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # while a run is in progress
# what from_pretrained reads, in its order of preference (an index lists the shards)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class DamagedCheckpoint(ValueError):
    """A checkpoint file is missing or does not parse."""


class CheckpointUnavailable(RuntimeError):
    """A checkpoint could not be read for a reason other than its content (see the module docstring)."""


@dataclass
class LoopState:
    """What the loop carries from step to step: optimizer steps done, tokens seen, the training clocks (seconds over
    resumed segments) and the running sums of the current logging interval (loss/<name> and metrics)."""

    step: int = 0
    tokens: float = 0.0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    interval_sums: dict[str, float] = field(default_factory=dict)
    interval_steps: int = 0
    interval_tokens: float = 0.0
    interval_start: float = 0.0  # train_seconds when the interval began

    def add_step(self, values: dict[str, float], tokens: float) -> None:
        self.step += 1
        self.tokens += tokens
        self.interval_sums = {k: self.interval_sums.get(k, 0.0) + v for k, v in values.items()}
        self.interval_steps += 1
        self.interval_tokens += tokens

    def start_interval(self, now: float) -> None:
        self.interval_sums, self.interval_steps, self.interval_tokens, self.interval_start = {}, 0, 0.0, now


@dataclass
class Checkpoint:
    """Everything this rank needs from one checkpoint folder, read into memory."""

    path: Path
    state: LoopState
    world_size: int
    tensors: dict[str, dict[str, torch.Tensor]]  # model name -> trainable parameters
    trainer: dict  # optimizers, schedulers, scaler
    rng: dict | None  # this rank's random states; None when written by another number of processes


# --- the fingerprint ------------------------------------------------------------------------------------------
def _flatten(value, prefix: str = "") -> dict:
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, sub in value.items() for k, v in _flatten(sub, f"{prefix}.{key}" if prefix else key).items()}


def changed_keys(old, new: dict) -> str:
    """`key: old -> new` for every flattened key that differs (or why there is nothing to compare)."""
    if old is None:
        return "no run.json"
    if not isinstance(old, dict):
        return "run.json unreadable"
    old, new = _flatten(old), _flatten(new)
    return "; ".join(f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
                     for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))


def claim_work_dir(work_dir: Path, fingerprint: dict) -> None:
    """Make work_dir the folder of the run `fingerprint` describes (rank 0, before anything in it is read). A
    folder with files but another fingerprint (or none readable) is removed whole, naming the changed keys. An
    OSError reading run.json propagates: nothing is removed on a failed read."""
    text = json.dumps(fingerprint, sort_keys=True, indent=1)
    new, record = json.loads(text), work_dir / "run.json"
    try:
        old = json.loads(record.read_text())
    except FileNotFoundError:
        old = None
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = "unreadable"
    if old == new:
        return
    if work_dir.is_dir() and any(work_dir.iterdir()):
        log.warning("%s holds another run's checkpoints (%s): removing them, starting over", work_dir,
                    changed_keys(old, new))
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, text)


def _local_file(model: str, name: str) -> Path | None:
    # callers pass a local folder (edad_core.download.resolve_model finds or fetches it), never a hub id
    return Path(model, name) if Path(model, name).is_file() else None


def weights_sha256(model: str) -> dict[str, str]:
    """sha256 of config.json and of the weights from_pretrained reads from the model folder `model`: the first of
    WEIGHT_FILES present, with an index's shards."""
    files = {"config.json": _local_file(model, "config.json")}
    for name in WEIGHT_FILES:
        if path := _local_file(model, name):
            files[name] = path
            if name.endswith(".index.json"):
                for shard in sorted(set(json.loads(path.read_text())["weight_map"].values())):
                    files[shard] = _local_file(model, shard)
            break
    else:
        raise FileNotFoundError(f"{model}: none of {WEIGHT_FILES} found to fingerprint the run by")
    return {name: sha256_file(path) if path else None for name, path in files.items()}


def tokenizer_sha256(folder) -> dict[str, str]:
    """sha256 of the tokenizer files (TOKENIZER_FILES) in `folder`."""
    return {name: sha256_file(path) for name in TOKENIZER_FILES if (path := _local_file(str(folder), name))}


# --- writing -------------------------------------------------------------------------------------------------
def list_checkpoints(work_dir: Path) -> list[Path]:
    """Complete checkpoints (renamed from their temp folder), oldest first."""
    found = [(int(m[1]), p) for p in work_dir.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return [p for _, p in sorted(found)]


def prune(work_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` checkpoints (0: all)."""
    for old in list_checkpoints(work_dir)[: -keep or None]:
        shutil.rmtree(old)


def trained_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a run changes (requires_grad; tied ones once). Frozen weights are rebuilt from their source
    on resume, so a checkpoint of an exBERT teacher holds its extension, not BERT's 110M frozen weights."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trained_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy a checkpoint's tensors (read from `path`) into the model's trainable parameters."""
    expected = trained_tensors(model)
    if tensors.keys() != expected.keys():
        missing, unexpected = sorted(expected.keys() - tensors.keys()), sorted(tensors.keys() - expected.keys())
        raise ValueError(f"{path}: does not match the model's trainable parameters (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}): the checkpoint belongs to another model")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in tensors:
                param.copy_(tensors[name])


def rng_state(generator: torch.Generator, device: torch.device) -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": np_state["state"]["pos"],
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        },
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, generator: torch.Generator, device: torch.device) -> None:
    random.setstate(state["python"])
    npst = state["numpy"]
    keys = npst["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(work_dir: Path, state: LoopState, *, rank: int, world_size: int, rng: dict,
                    tensors: dict[str, dict[str, torch.Tensor]] | None = None, trainer: dict | None = None) -> None:
    """work_dir/checkpoint-<step>/ (called by every rank; `tensors` and `trainer` are rank 0's): written in a temp
    folder, fsynced and renamed; the newest KEEP_CHECKPOINTS are kept."""
    tmp, final = work_dir / f".tmp-checkpoint-{state.step}", work_dir / f"checkpoint-{state.step}"
    tmp.mkdir(exist_ok=True)
    torch.save(rng, tmp / f"rng-{rank}.pt")
    if rank == 0:
        for name, named in tensors.items():
            save_file(named, tmp / f"model-{name}.safetensors")
        torch.save(trainer, tmp / "trainer.pt")
    barrier()  # every rank's RNG file is in place
    if rank == 0:
        atomic_write_json(tmp / "state.json", {**asdict(state), "world_size": world_size})
        fsync_tree(tmp)  # every byte on disk before the checkpoint becomes visible under its final name
        os.replace(tmp, final)
        fsync_dir(work_dir)
        prune(work_dir, KEEP_CHECKPOINTS)
    barrier()


# --- reading and choosing ------------------------------------------------------------------------------------
def _read(path: Path) -> bytes:
    """A file's bytes: a missing file is damage; any other OSError propagates (it says nothing about the file)."""
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise DamagedCheckpoint(f"{path} is missing") from err


def read_checkpoint(ckpt: Path, names: list[str], *, rank: int, world_size: int, device: torch.device) -> Checkpoint:
    """Every file this rank needs, read first (OSError: propagates), then parsed (any failure: DamagedCheckpoint)."""
    raw_state = _read(ckpt / "state.json")
    raw = {name: _read(ckpt / f"model-{name}.safetensors") for name in names}
    raw_trainer = _read(ckpt / "trainer.pt")
    try:
        fields = json.loads(raw_state)
        written_by = fields.pop("world_size")
        raw_rng = _read(ckpt / f"rng-{rank}.pt") if written_by == world_size else None
        return Checkpoint(
            ckpt, LoopState(**fields), written_by, {name: load_safetensors(data) for name, data in raw.items()},
            torch.load(io.BytesIO(raw_trainer), map_location=device, weights_only=True),
            torch.load(io.BytesIO(raw_rng), map_location="cpu", weights_only=True) if raw_rng is not None else None)
    except (OSError, MemoryError, DamagedCheckpoint):
        raise
    except Exception as err:  # the content is wrong: truncated, empty, not what we write
        raise DamagedCheckpoint(f"{ckpt}: {type(err).__name__}: {err}") from err


def load_newest(work_dir: Path, names: list[str], *, rank: int, world_size: int, device: torch.device
                ) -> Checkpoint | None:
    """The newest checkpoint that reads completely on every rank (None: none, start at step 0), applying the
    deletion rules of the module docstring; every rank takes the same decision."""
    found = list_checkpoints(work_dir)
    for i in reversed(range(len(found))):
        ckpt, error = None, None
        try:
            ckpt = read_checkpoint(found[i], names, rank=rank, world_size=world_size, device=device)
        except (DamagedCheckpoint, OSError) as err:
            error = err
        # 0: read, 1: damaged, 2: unavailable, the worst over the ranks
        status = torch.tensor(0 if ckpt else 1 if isinstance(error, DamagedCheckpoint) else 2, device=device)
        if dist.is_initialized():
            dist.all_reduce(status, op=dist.ReduceOp.MAX)
        why = f"{type(error).__name__}: {error}" if error else "on another rank"
        if status.item() == 2:
            raise CheckpointUnavailable(
                f"{found[i]} could not be read ({why}); nothing says it is damaged, so every checkpoint in "
                f"{work_dir} is kept: rerun when the storage reads again") from error
        if status.item() == 0:
            if rank == 0:
                for damaged in found[i + 1:]:  # their steps are computed again and saved anew
                    shutil.rmtree(damaged)
            return ckpt
        log.warning("%s does not load (%s); trying the previous checkpoint", found[i], why)
    if found:
        log.warning("no checkpoint in %s loads: starting over from step 0", work_dir)
        if rank == 0:
            prune(work_dir, 0)
    return None
