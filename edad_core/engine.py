"""The one training loop behind every stage (teacher adaptation, TinyBERT distillation, EDAD, NER fine-tuning).

Usage (inside a script launched by `torchrun --standalone --nproc-per-node N` or plainly as one process):

    cfg = TrainConfig(output_dir=..., work_dir=..., lr={"teacher": 1e-4, "student": 1e-4}, epochs=3)
    with Engine(cfg, {"teacher": t, "student": s}, ["teacher", "student"], dataset, collate_fn, step_fn) as engine:
        summary = engine.train()
        if engine.is_main:
            engine.unwrap("student").save_pretrained(out)

  Leaving the `with` block waits for every rank (so none exits while rank 0 writes) and destroys the process
  group (`engine.close()` does the same). Attributes: total_steps, steps_per_epoch, accum, precision, dist, is_main.
- `models`: every module taking part. `trainable` names get an optimizer (cfg.optimizer: torch's AdamW or
  BERT's BertAdam of edad_core.optim; no weight decay on biases and norm-layer weights; only params with
  requires_grad) and an LR scheduler each, and are wrapped in DistributedDataParallel when world_size > 1. A
  module with trainable state used inside a loss (e.g. TinyBERT's projection) is a trainable model of its own.
  The other models are frozen: requires_grad off, no DDP, in eval mode or, with cfg.frozen_mode "train", in
  train mode (dropout on, as TinyBERT's GD runs its teacher; call them under no_grad).
- `step_fn(models, batch, ctx) -> (losses, metrics)`: `models` holds the (possibly DDP-wrapped) modules: call
  them, and use `unwrap(m)` for attributes. `batch` is collate_fn's dict, moved to the device; randomness must
  come from `ctx.generator` (or torch's global RNG, e.g. dropout), never from collate_fn. `losses`: named scalar
  tensors; their sum is backpropagated once and every optimizer steps its own params (conventionally one loss per
  trainable model; losses of different models must not share graph edges). `metrics`: extra scalars to log.
  Keys must be the same at every step. The step_fn runs under autocast.
- `ctx` (`StepContext`): `step` (0-based optimizer step), `epoch`, `micro_step`, `total_steps`, `generator` (on
  the device, seeded per rank from cfg.seed, checkpointed), `device`, `rank`, `world_size`.
Batching, checkpoints, optimisation and logs are described where they are done: `epoch_batches` /
`MicroBatches`, `Engine.save_checkpoint` / `Engine.resume`, `Engine.optimizer_step`, `Engine.write_log` and
`Engine.train`. Only rank 0 writes files.
"""

import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import get_constant_schedule, get_linear_schedule_with_warmup

from edad_core.distributed import (
    barrier,
    destroy_distributed,
    init_distributed,
    synchronize,
)
from edad_core.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_dir,
    fsync_tree,
)
from edad_core.optim import BertAdam, clip_grad_norm_per_tensor_

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "linear_warmup")
OPTIMIZERS = ("adamw", "bert_adam")
# clip_mode -> clipping function: one norm over each model's gradients, or each tensor alone (BERT)
CLIPPERS = {"global": clip_grad_norm_, "per_tensor": clip_grad_norm_per_tensor_}
CLIP_MODES = tuple(CLIPPERS)
FROZEN_MODES = ("eval", "train")
# The choices where the reference code and a faster run may differ (docs/design.md decision 8): recorded in
# train_summary.json
CHOICE_KEYS = ("optimizer", "adam_eps", "weight_decay", "max_grad_norm", "clip_mode", "frozen_mode",
               "group_by_length", "pad_to_max_length")
MEGABATCH = 50  # global batches per length-sorted chunk (group_by_length)
KEEP_CHECKPOINTS = 2
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)
# Settings a checkpoint depends on (which examples form each global batch; the optimizer's state): a checkpoint is
# only valid if they did not change.
DATA_KEYS = ("batch_size", "seed", "group_by_length", "optimizer")


class NonFiniteLossError(RuntimeError):
    """A NaN/inf loss on some rank; the last good checkpoint stays."""


@dataclass
class TrainConfig:
    output_dir: str
    work_dir: str
    lr: dict[str, float] | float
    epochs: float = 3
    max_steps: int | None = None
    batch_size: int = 128
    per_device_batch_size: int = 32
    lr_schedule: str = "constant"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    optimizer: str = "adamw"  # adamw: torch's AdamW; bert_adam: BERT's (no bias correction, edad_core.optim)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    clip_mode: str = "global"  # global: one norm over each model's gradients; per_tensor: each tensor alone (BERT)
    frozen_mode: str = "eval"  # mode of the non-trainable models (train: dropout on; no gradient either way)
    precision: str = "auto"
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 42
    num_workers: int = 0
    group_by_length: bool = False
    pad_to_max_length: bool = False  # read by the collate of edad_core.stages: every batch padded to the data's max
    keep_final_checkpoint: bool = True  # False: a finished run removes all its checkpoints (a rerun starts over)

    def __post_init__(self):
        lrs = self.lr.values() if isinstance(self.lr, dict) else [self.lr]
        checks = [
            ("lr", all(lr > 0 for lr in lrs), "positive (a number or a dict model name -> number)"),
            ("epochs", self.max_steps is not None or self.epochs > 0, "> 0"),
            ("max_steps", self.max_steps is None or self.max_steps >= 1, "null or >= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("per_device_batch_size", self.per_device_batch_size >= 1, ">= 1"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("adam_eps", self.adam_eps > 0, "> 0"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "null or > 0"),
            ("clip_mode", self.clip_mode in CLIP_MODES, f"one of {CLIP_MODES}"),
            ("frozen_mode", self.frozen_mode in FROZEN_MODES, f"one of {FROZEN_MODES}"),
            ("precision", self.precision in PRECISIONS, f"one of {PRECISIONS}"),
            ("checkpoint_every", self.checkpoint_every >= 1, ">= 1"),
            ("log_every", self.log_every >= 1, ">= 1"),
            ("num_workers", self.num_workers >= 0, ">= 0"),
        ]
        for key, ok, what in checks:
            if not ok:
                raise ValueError(f"train.{key} = {getattr(self, key)!r}: must be {what}")


@dataclass
class StepContext:
    step: int
    epoch: int
    micro_step: int
    total_steps: int
    generator: torch.Generator
    device: torch.device
    rank: int
    world_size: int


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups: no weight decay on biases and normalisation-layer weights (tied params counted once)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                (no_decay if name.endswith("bias") or isinstance(module, NORM_LAYERS) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(name: str, groups: list[dict], lr: float, eps: float) -> torch.optim.Optimizer:
    if name == "bert_adam":
        return BertAdam(groups, lr=lr, eps=eps)
    return torch.optim.AdamW(groups, lr=lr, eps=eps)


def make_scheduler(optimizer, schedule: str, warmup_ratio: float, total_steps: int):
    if schedule == "constant":
        return get_constant_schedule(optimizer)
    return get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)


def epoch_batches(n_examples: int, batch_size: int, seed: int, epoch: int, lengths=None) -> np.ndarray:
    """Example indices of one epoch's global batches, shape (n_examples // batch_size, batch_size): a
    permutation from (seed, epoch) cut into global batches, the last incomplete one dropped (so total_steps =
    max_steps or round(epochs x (len(dataset) // batch_size))). With `lengths` (group_by_length), inside chunks of
    MEGABATCH global batches the examples are sorted longest first, then the batches are shuffled."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_examples)
    if lengths is not None:
        chunk = np.arange(n_examples) // (MEGABATCH * batch_size)
        order = order[np.lexsort((-lengths[order], chunk))]  # stable: longest first inside each chunk
    n_batches = n_examples // batch_size
    batches = order[: n_batches * batch_size].reshape(n_batches, batch_size)
    return batches[rng.permutation(n_batches)] if lengths is not None else batches


class MicroBatches:
    """This rank's micro-batches (lists of example indices) for optimizer steps start..total_steps-1.
    Accumulation = batch_size / (per_device_batch_size x world_size), exactly; rank r takes slice
    a * world_size + r of a global batch at micro-step a, so the examples of a global batch do not depend on the
    world size and N processes equal one process with the same batch_size (each micro-batch loss is scaled by
    1 / accumulation: a mean of per-micro-batch means)."""

    def __init__(self, engine: "Engine", lengths, start: int):
        self.e, self.lengths, self.start = engine, lengths, start

    def __len__(self):
        return (self.e.total_steps - self.start) * self.e.accum

    def __iter__(self):
        e, b = self.e, self.e.cfg.per_device_batch_size
        epoch, batches = None, None
        for step in range(self.start, e.total_steps):
            if step // e.steps_per_epoch != epoch:
                epoch = step // e.steps_per_epoch
                batches = epoch_batches(e.n_examples, e.cfg.batch_size, e.cfg.seed, epoch, self.lengths)
            batch = batches[step % e.steps_per_epoch]
            for micro in range(e.accum):
                k = micro * e.dist.world_size + e.dist.rank
                yield batch[k * b : (k + 1) * b].tolist()


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


def count_tokens(batch: dict, device: torch.device) -> torch.Tensor:
    if "attention_mask" in batch:
        return batch["attention_mask"].sum().double()
    if "input_ids" in batch:
        return torch.tensor(batch["input_ids"].numel(), dtype=torch.float64, device=device)
    return torch.zeros((), dtype=torch.float64, device=device)


def as_scalar(value, device: torch.device) -> torch.Tensor:
    value = value.detach() if isinstance(value, torch.Tensor) else value
    return torch.as_tensor(value, dtype=torch.float64, device=device).reshape(())


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


def checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (renamed from their temp dir), oldest first."""
    found = [(int(m[1]), p) for p in work_dir.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return sorted(found)


class Engine:
    def __init__(self, cfg: TrainConfig, models: dict[str, nn.Module], trainable: list[str], dataset,
                 collate_fn: Callable, step_fn: Callable, *, lengths=None):
        self.cfg, self.dataset, self.collate_fn, self.step_fn = cfg, dataset, collate_fn, step_fn
        self.dist = d = init_distributed()
        self.is_main = d.is_main
        unknown = [n for n in trainable if n not in models]
        if unknown or not trainable:
            raise ValueError(f"trainable models {unknown or trainable} must be non-empty names of {list(models)}")
        lrs = cfg.lr if isinstance(cfg.lr, dict) else dict.fromkeys(trainable, cfg.lr)
        if missing := [n for n in trainable if n not in lrs]:
            raise ValueError(f"train.lr has no learning rate for the trainable model(s) {missing}")
        per_step = cfg.per_device_batch_size * d.world_size
        if cfg.batch_size % per_step:
            raise ValueError(
                f"train.batch_size ({cfg.batch_size}) must be a multiple of train.per_device_batch_size "
                f"({cfg.per_device_batch_size}) x world size ({d.world_size}) = {per_step}, so that gradient "
                f"accumulation keeps the effective batch exact")
        self.accum = cfg.batch_size // per_step
        self.n_examples = len(dataset)
        self.steps_per_epoch = self.n_examples // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the dataset has {self.n_examples} examples, fewer than train.batch_size ({cfg.batch_size})")
        self.total_steps = cfg.max_steps or max(1, round(cfg.epochs * self.steps_per_epoch))
        if cfg.group_by_length and (lengths is None or len(lengths) != self.n_examples):
            raise ValueError(f"train.group_by_length needs `lengths` with one entry per example ({self.n_examples})")
        self.lengths = np.asarray(lengths) if cfg.group_by_length else None
        self.precision = resolve_precision(cfg.precision, d.device)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

        self.trainable = list(trainable)
        self.models = {}
        for name, model in models.items():
            model.to(d.device)
            if name in trainable:
                model.train()
                if d.world_size > 1:
                    device_ids = [d.device.index] if d.device.type == "cuda" else None
                    model = DistributedDataParallel(model, device_ids=device_ids)
            else:
                model.train(cfg.frozen_mode == "train").requires_grad_(False)
            self.models[name] = model
        self.optimizers, self.schedulers, self.opt_params = {}, {}, {}
        for name in trainable:
            groups = param_groups(self.unwrap(name), cfg.weight_decay)
            if not groups:
                raise ValueError(f"trainable model {name!r} has no parameters with requires_grad")
            self.optimizers[name] = opt = make_optimizer(cfg.optimizer, groups, lrs[name], cfg.adam_eps)
            self.schedulers[name] = make_scheduler(opt, cfg.lr_schedule, cfg.warmup_ratio, self.total_steps)
            self.opt_params[name] = [p for g in groups for p in g["params"]]
        self.scaler = torch.amp.GradScaler(d.device.type, enabled=self.precision == "fp16")
        self.generator = torch.Generator(device=d.device)
        self.params = {
            name: {"total": sum(p.numel() for p in m.parameters()),
                   "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad)}
            for name, m in models.items()}
        self.keys = None  # (loss names, metric names) of the first step

    def unwrap(self, name: str) -> nn.Module:
        return unwrap(self.models[name])

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(wait=exc_type is None)

    def close(self, wait: bool = True) -> None:
        """Wait for every rank (so none exits while rank 0 still writes), then leave the process group."""
        if wait:
            barrier()
        destroy_distributed()

    # --- the loop -----------------------------------------------------------------------------------------
    def train(self, save_models: Callable[[], None] | None = None) -> dict:
        """Train to total_steps (resuming), then on rank 0: `save_models()` (the final models), metrics.jsonl and
        train_summary.json (written last: it marks a complete run), and prune the checkpoints to the final one
        (or none, cfg.keep_final_checkpoint)."""
        cfg, d = self.cfg, self.dist
        work = Path(cfg.work_dir)
        if d.is_main:
            work.mkdir(parents=True, exist_ok=True)
            for stale in work.glob(".tmp-checkpoint-*"):
                shutil.rmtree(stale)
        barrier()
        self.seed_all(0)
        state = self.resume(work)
        start = state["step"]
        if d.is_main:
            self.truncate_log(work / "metrics.jsonl", start)
            if start:
                log.info("resuming from %s/checkpoint-%d (step %d of %d)", work, start, start, self.total_steps)
        loader = DataLoader(
            self.dataset, batch_sampler=MicroBatches(self, self.lengths, start), collate_fn=self.collate_fn,
            num_workers=cfg.num_workers, pin_memory=d.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed))  # own generator: leaves the global RNG untouched
        batches = iter(loader)
        ctx = StepContext(start, 0, 0, self.total_steps, self.generator, d.device, d.rank, d.world_size)
        synchronize(d.device)
        self.start_segment()
        bar = tqdm(total=self.total_steps, initial=start, disable=not d.is_main, desc="train", dynamic_ncols=True)
        with bar:
            for step in range(start, self.total_steps):
                ctx.step, ctx.epoch = step, step // self.steps_per_epoch
                values = self.forward_backward(batches, ctx)
                lrs = self.optimizer_step()
                n_losses = len(self.keys[0])
                state["step"] = step + 1
                state["tokens"] += values[-1]
                interval = state["log"]
                interval["sums"] = [s + v for s, v in zip(interval["sums"] or [0.0] * (len(values) - 1), values[:-1])]
                interval["steps"] += 1
                interval["tokens"] += values[-1]
                if (step + 1) % cfg.log_every == 0 or step + 1 == self.total_steps:
                    self.write_log(work / "metrics.jsonl", state, lrs)
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == self.total_steps:
                    self.save_checkpoint(work, state)
                bar.set_postfix(loss=f"{sum(values[:n_losses]):.4f}", refresh=False)
                bar.update()
        synchronize(d.device)
        summary = {
            "train_seconds": self.train_seconds(state),
            "train_cpu_seconds": self.train_cpu_seconds(state),
            "steps": state["step"],
            "epochs": state["step"] / self.steps_per_epoch,
            "examples": state["step"] * cfg.batch_size,
            "tokens": int(state["tokens"]),
            "world_size": d.world_size,
            **d.hardware(),  # device, device_count: the tables' captions name them
            "precision": self.precision,
            "batch_size": cfg.batch_size,
            "per_device_batch_size": cfg.per_device_batch_size,
            "grad_accum_steps": self.accum,
            "params": self.params,
            "choices": {k: getattr(cfg, k) for k in CHOICE_KEYS},
        }
        if d.is_main:
            out = Path(cfg.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            if save_models is not None:
                save_models()
            atomic_write_bytes(out / "metrics.jsonl", (work / "metrics.jsonl").read_bytes())
            atomic_write_json(out / "train_summary.json", summary)
            for _, old in checkpoints(work)[:-1 if cfg.keep_final_checkpoint else None]:
                shutil.rmtree(old)
        barrier()
        return summary

    def forward_backward(self, batches, ctx: StepContext) -> list[float]:
        """All micro-steps of one optimizer step; returns [losses..., metrics..., tokens] over the global batch."""
        device, ddp = self.dist.device, [m for m in self.models.values() if isinstance(m, DistributedDataParallel)]
        total = None
        for micro in range(self.accum):
            ctx.micro_step = micro
            batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in next(batches).items()}
            with contextlib.ExitStack() as stack:
                if micro < self.accum - 1:  # gradients are all-reduced only on the last micro-step
                    for model in ddp:
                        stack.enter_context(model.no_sync())
                with torch.autocast(device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    losses, metrics = self.step_fn(self.models, batch, ctx)
                self.check_keys(losses, metrics, ctx.step)
                self.scaler.scale(sum(losses.values()) / self.accum).backward()
            row = torch.stack([*(as_scalar(v, device) / self.accum for v in losses.values()),
                               *(as_scalar(v, device) / self.accum for v in metrics.values()),
                               count_tokens(batch, device)])
            total = row if total is None else total + row
        if dist.is_initialized():  # also makes a NaN on any rank visible to all
            dist.all_reduce(total)
            total[:-1] /= self.dist.world_size
        values = total.tolist()
        n_losses = len(self.keys[0])
        if not all(math.isfinite(v) for v in values[:n_losses]):
            bad = {k: v for k, v in zip(self.keys[0], values) if not math.isfinite(v)}
            raise NonFiniteLossError(
                f"non-finite loss at step {ctx.step} (0-based optimizer step): {bad}; no checkpoint was written "
                f"for it, the newest one in {self.cfg.work_dir} is the last good state")
        return values

    def check_keys(self, losses: dict, metrics: dict, step: int) -> None:
        keys = (list(losses), list(metrics))
        if self.keys is None:
            reserved = {"step", "epoch", "loss", "tokens_per_s"}
            clash = [k for k in metrics if k in reserved or k.startswith(("loss/", "lr/"))]
            if not losses or clash:
                raise ValueError(f"step_fn must return at least one loss and metric names other than "
                                 f"{sorted(reserved)}, loss/*, lr/* (got losses {keys[0]}, metrics {keys[1]})")
            self.keys = keys
        elif keys != self.keys:
            raise ValueError(f"step_fn returned losses {keys[0]} and metrics {keys[1]} at step {step}, but "
                             f"{self.keys[0]} and {self.keys[1]} before: the keys must stay the same")

    def optimizer_step(self) -> dict[str, float]:
        """Clip (after GradScaler's unscale) to max_grad_norm per model (clip_mode "global") or per parameter
        tensor ("per_tensor", BERT's) and step every trainable model; returns the learning rate each one used.
        lr_schedule "constant", or "linear_warmup" (ceil(warmup_ratio x total_steps) warmup steps, then linear
        decay to 0). Precision "auto" = bf16 autocast on GPUs that support it, else fp16 + GradScaler, fp32 on
        CPU. A non-finite loss on any rank has already raised NonFiniteLossError (forward_backward): no
        checkpoint of a bad state is ever written."""
        for name, opt in self.optimizers.items():
            if self.cfg.max_grad_norm is not None:
                self.scaler.unscale_(opt)  # clip the true gradients
                CLIPPERS[self.cfg.clip_mode](self.opt_params[name], self.cfg.max_grad_norm)
            self.scaler.step(opt)
        self.scaler.update()
        lrs = {}
        for name, opt in self.optimizers.items():
            lrs[name] = self.schedulers[name].get_last_lr()[0]
            opt.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # fp16: GradScaler may skip opt.step(), which LambdaLR warns about
                warnings.simplefilter("ignore", UserWarning)
                self.schedulers[name].step()
        return lrs

    def start_segment(self) -> None:
        self.segment_start, self.segment_cpu_start = time.perf_counter(), time.process_time()

    def train_seconds(self, state: dict) -> float:
        return state["train_seconds"] + time.perf_counter() - self.segment_start

    def train_cpu_seconds(self, state: dict) -> float:
        """This process's CPU time in the loop (all its threads): on a shared machine it varies less with the
        other jobs' load than the wall time does."""
        return state["train_cpu_seconds"] + time.process_time() - self.segment_cpu_start

    def write_log(self, path: Path, state: dict, lrs: dict[str, float]) -> None:
        """Every log_every steps, one line of work_dir/metrics.jsonl (rank 0): step (optimizer steps done), epoch,
        loss and loss/<name>, metrics, lr/<name>, averaged over the interval and the ranks; tokens_per_s
        (tokens = attention_mask sum, else input_ids elements). It lives in work_dir so that it survives a failed
        job; train() copies it to output_dir at the end, beside train_summary.json (train_seconds = synchronised
        training-loop time over resumed segments, checkpoint writing excluded; train_cpu_seconds = this process's
        CPU time over the same segments; steps, tokens, examples, params, world_size, precision, batch sizes, and
        `choices`: the settings of CHOICE_KEYS)."""
        interval, (loss_keys, metric_keys) = state["log"], self.keys
        now = self.train_seconds(state)
        if self.dist.is_main:
            means = [s / interval["steps"] for s in interval["sums"]]
            record = {"step": state["step"], "epoch": state["step"] / self.steps_per_epoch,
                      "loss": sum(means[: len(loss_keys)]),
                      **{f"loss/{k}": v for k, v in zip(loss_keys, means)},
                      **dict(zip(metric_keys, means[len(loss_keys):])),
                      **{f"lr/{k}": v for k, v in lrs.items()},
                      "tokens_per_s": interval["tokens"] / max(now - interval["seconds"], 1e-9)}
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        state["log"] = {"sums": None, "steps": 0, "tokens": 0.0, "seconds": now}

    @staticmethod
    def truncate_log(path: Path, step: int) -> None:
        """Drop log lines of steps after the checkpoint we resume from (they will be logged again)."""
        kept = []
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line, cut by a kill while it was written
                break
            if record["step"] <= step:
                kept.append(line)
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    # --- checkpoints --------------------------------------------------------------------------------------
    def seed_all(self, step: int) -> None:
        """Seed python, numpy, torch (and CUDA) and ctx.generator from (seed, rank, step): distinct streams."""
        global_seed, generator_seed = np.random.SeedSequence([self.cfg.seed, self.dist.rank, step]).generate_state(2)
        random.seed(int(global_seed))
        np.random.seed(int(global_seed))
        torch.manual_seed(int(global_seed))
        self.generator.manual_seed(int(generator_seed))

    def data_settings(self) -> dict:
        return {**{k: getattr(self.cfg, k) for k in DATA_KEYS}, "n_examples": self.n_examples}

    def save_checkpoint(self, work: Path, state: dict) -> None:
        """work_dir/checkpoint-<step>/ (every checkpoint_every steps and at the end), written in a temp folder,
        fsynced and renamed; the newest two are kept while the run is in progress (train() prunes to the final
        one, or none, at the end). model-<name>.safetensors (trainable parameters only), trainer.pt (optimizer,
        scheduler and GradScaler states), rng-<rank>.pt (python, numpy, torch, CUDA and ctx-generator states of
        each rank), state.json (data position, counters, logging accumulators); all load with
        torch.load(weights_only=True). On CPU a resumed run is bit-identical to an uninterrupted one; changing
        batch_size, seed, group_by_length, optimizer or the dataset size in between is an error, another world
        size resumes with fresh random streams."""
        d = self.dist
        synchronize(d.device)
        # the clocks stop while the checkpoint is written
        state["train_seconds"], state["train_cpu_seconds"] = self.train_seconds(state), self.train_cpu_seconds(state)
        step = state["step"]
        tmp, final = work / f".tmp-checkpoint-{step}", work / f"checkpoint-{step}"
        tmp.mkdir(exist_ok=True)
        torch.save(rng_state(self.generator, d.device), tmp / f"rng-{d.rank}.pt")
        if d.is_main:
            for name in self.trainable:
                save_file(trained_tensors(self.unwrap(name)), tmp / f"model-{name}.safetensors")
            torch.save({"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                        "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                        "scaler": self.scaler.state_dict()}, tmp / "trainer.pt")
        barrier()  # every rank's RNG file is in place
        if d.is_main:
            atomic_write_json(tmp / "state.json", {**state, "world_size": d.world_size, "data": self.data_settings()})
            fsync_tree(tmp)  # every byte on disk before the checkpoint becomes visible under its final name
            os.replace(tmp, final)
            fsync_dir(work)
            for _, old in checkpoints(work)[:-KEEP_CHECKPOINTS]:
                shutil.rmtree(old)
        barrier()
        self.start_segment()

    def read_checkpoint(self, ckpt: Path) -> dict:
        """Everything this rank needs from `ckpt`, read into memory (nothing applied yet): raises if any file is
        missing, truncated or unreadable."""
        device = self.dist.device
        state = json.loads((ckpt / "state.json").read_text())
        tensors = {name: load_file(ckpt / f"model-{name}.safetensors", device=str(device)) for name in self.trainable}
        trainer = torch.load(ckpt / "trainer.pt", map_location=device, weights_only=True)
        rng = None
        if state["world_size"] == self.dist.world_size:
            rng = torch.load(ckpt / f"rng-{self.dist.rank}.pt", map_location="cpu", weights_only=True)
        return {"state": state, "tensors": tensors, "trainer": trainer, "rng": rng}

    def resume(self, work: Path) -> dict:
        """Load the newest checkpoint that reads completely (on every rank) into models, optimizers and RNGs;
        returns the loop state. A damaged checkpoint (a crash can tear any file on some file systems, a disk can
        fill) is reported by path and the previous one is tried; with none readable the run starts over."""
        fresh = {"step": 0, "tokens": 0.0, "train_seconds": 0.0, "train_cpu_seconds": 0.0,
                 "log": {"sums": None, "steps": 0, "tokens": 0.0, "seconds": 0.0}}
        found = checkpoints(work)
        for i, (_, ckpt) in reversed(list(enumerate(found))):
            try:
                loaded, error = self.read_checkpoint(ckpt), None
            except Exception as err:  # any reading failure: this checkpoint is unusable, not the run
                loaded, error = None, err
            ok = torch.tensor(float(loaded is not None), device=self.dist.device)
            if dist.is_initialized():
                dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            if ok.item():
                if self.dist.is_main:  # the damaged newer ones: their steps are computed again and saved anew
                    for _, damaged in found[i + 1:]:
                        shutil.rmtree(damaged)
                return self.apply_checkpoint(ckpt, loaded, work)
            log.warning("%s does not load%s; trying the previous checkpoint", ckpt,
                        f" ({type(error).__name__}: {error})" if error else " on another rank")
        if found:
            log.warning("no checkpoint in %s loads: starting over from step 0", work)
            if self.dist.is_main:
                for _, damaged in found:
                    shutil.rmtree(damaged)
        return fresh

    def apply_checkpoint(self, ckpt: Path, loaded: dict, work: Path) -> dict:
        state = loaded["state"]
        state.setdefault("train_cpu_seconds", 0.0)  # a checkpoint written before this clock existed
        for key, value in self.data_settings().items():
            if state["data"].get(key) != value:
                name = f"train.{key}" if key in DATA_KEYS else "the dataset size"
                raise ValueError(f"{ckpt} was written with {name} = {state['data'].get(key)}, now {value}: restore it, "
                                 f"or delete {work} to start over")
        for name in self.trainable:
            load_trained_tensors(self.unwrap(name), loaded["tensors"][name], ckpt / f"model-{name}.safetensors")
        trainer = loaded["trainer"]
        for name in self.trainable:
            self.optimizers[name].load_state_dict(trainer["optimizers"][name])
            self.schedulers[name].load_state_dict(trainer["schedulers"][name])
        self.scaler.load_state_dict(trainer["scaler"])
        if state.pop("world_size") == self.dist.world_size:
            set_rng_state(loaded["rng"], self.generator, self.dist.device)
        else:
            log.warning("%s was written by another number of processes: random streams start afresh", ckpt)
            self.seed_all(state["step"])
        del state["data"]
        return state
