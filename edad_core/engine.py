"""The one training loop behind every stage (teacher adaptation, TinyBERT distillation, EDAD, NER fine-tuning).

Usage (inside a script launched by `torchrun --standalone --nproc-per-node N` or plainly as one process):

    cfg = TrainConfig(output_dir=..., work_dir=..., lr={"teacher": 1e-4, "student": 1e-4}, epochs=3)
    with Engine(cfg, {"teacher": t, "student": s}, ["teacher", "student"], dataset, collate_fn, step_fn,
                fingerprint={"run": description, "source": weights_sha256(base), ...}) as engine:
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
- `fingerprint`: what the result depends on that the engine cannot see (JSON values): the run description,
  the sha256 of the source weights and of the tokenizer files (edad_core.checkpointing.weights_sha256 /
  tokenizer_sha256), the dataset's labels and file hashes. The engine adds the TrainConfig fields that change the
  result (all but RESULT_NEUTRAL_KEYS; precision as resolved) and the dataset size, and claims work_dir with it
  (work_dir/run.json): checkpoints of any other fingerprint are removed, naming the changed keys, and nothing is
  resumed across a change (edad_core.checkpointing has the rules, the file layout and the deletion policy).
Only rank 0 writes files. On CPU a resumed run is bit-identical to an uninterrupted one; another world size
resumes with fresh random streams. Batching: `epoch_batches` / `MicroBatches`; logs: `MetricsLog`; optimisation:
`Engine.optimizer_step`.
"""

import contextlib
import json
import logging
import math
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import get_constant_schedule, get_linear_schedule_with_warmup

from edad_core.checkpointing import (
    LoopState,
    claim_work_dir,
    load_newest,
    load_trained_tensors,
    prune,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trained_tensors,
)
from edad_core.distributed import barrier, destroy_distributed, init_distributed, synchronize
from edad_core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
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
# TrainConfig fields that do not change what a run computes: left out of its fingerprint, checkpoints stay valid
RESULT_NEUTRAL_KEYS = ("output_dir", "work_dir", "log_every", "checkpoint_every", "num_workers",
                       "keep_final_checkpoint")
MEGABATCH = 50  # global batches per length-sorted chunk (group_by_length)
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)


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


def count_tokens(batch: dict, device: torch.device) -> torch.Tensor:
    if "attention_mask" in batch:
        return batch["attention_mask"].sum().double()
    if "input_ids" in batch:
        return torch.tensor(batch["input_ids"].numel(), dtype=torch.float64, device=device)
    return torch.zeros((), dtype=torch.float64, device=device)


def as_scalar(value, device: torch.device) -> torch.Tensor:
    value = value.detach() if isinstance(value, torch.Tensor) else value
    return torch.as_tensor(value, dtype=torch.float64, device=device).reshape(())


@dataclass
class StepTotals:
    """One optimizer step's losses and metrics (means over its micro-steps and the ranks) and its token count
    (attention_mask sum, else input_ids elements, over the global batch)."""

    losses: dict[str, float]
    metrics: dict[str, float]
    tokens: float

    def logged(self) -> dict[str, float]:
        return {**{f"loss/{k}": v for k, v in self.losses.items()}, **self.metrics}


class Stopwatch:
    """Training time over resumed segments, kept in the LoopState: wall time (read after a device sync) and this
    process's CPU time (all its threads: on a shared machine it varies less with the other jobs' load). It is
    stopped while a checkpoint is written."""

    def __init__(self, state: LoopState):
        self.state = state
        self.start()

    def start(self) -> None:
        self.wall_start, self.cpu_start = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        return (self.state.train_seconds + time.perf_counter() - self.wall_start,
                self.state.train_cpu_seconds + time.process_time() - self.cpu_start)

    def stop(self) -> None:
        self.state.train_seconds, self.state.train_cpu_seconds = self.seconds()


class MetricsLog:
    """work_dir/metrics.jsonl (rank 0), a line every log_every steps: step (optimizer steps done), epoch, loss and
    loss/<name>, metrics, lr/<name>, averaged over the interval and the ranks, and tokens_per_s. It lives in
    work_dir so that it survives a failed job (lines after the step resumed from are dropped: they are logged
    again); train() copies it to output_dir at the end."""

    def __init__(self, path: Path, resume_step: int, steps_per_epoch: int, is_main: bool):
        self.path, self.steps_per_epoch, self.is_main = path, steps_per_epoch, is_main
        if is_main:
            kept = []
            for line in path.read_text().splitlines() if path.exists() else []:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the last line, cut by a kill while it was written
                    break
                if record["step"] <= resume_step:
                    kept.append(line)
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, state: LoopState, lrs: dict[str, float], now: float) -> None:
        """Log the interval that ends at state.step (`now`: its train_seconds) and start the next one."""
        if self.is_main:
            means = {k: s / state.interval_steps for k, s in state.interval_sums.items()}
            record = {"step": state.step, "epoch": state.step / self.steps_per_epoch,
                      "loss": sum(v for k, v in means.items() if k.startswith("loss/")), **means,
                      **{f"lr/{k}": v for k, v in lrs.items()},
                      "tokens_per_s": state.interval_tokens / max(now - state.interval_start, 1e-9)}
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        state.start_interval(now)


def learning_rates(cfg: TrainConfig, trainable: list[str], models: dict) -> dict[str, float]:
    """Each trainable model's learning rate (cfg.lr: one for all, or a dict by model name)."""
    unknown = [n for n in trainable if n not in models]
    if unknown or not trainable:
        raise ValueError(f"trainable models {unknown or trainable} must be non-empty names of {list(models)}")
    lrs = cfg.lr if isinstance(cfg.lr, dict) else dict.fromkeys(trainable, cfg.lr)
    if missing := [n for n in trainable if n not in lrs]:
        raise ValueError(f"train.lr has no learning rate for the trainable model(s) {missing}")
    return {n: lrs[n] for n in trainable}


def plan_steps(cfg: TrainConfig, n_examples: int, world_size: int) -> tuple[int, int, int]:
    """(accumulation steps, steps per epoch, total steps); see epoch_batches and MicroBatches."""
    per_step = cfg.per_device_batch_size * world_size
    if cfg.batch_size % per_step:
        raise ValueError(
            f"train.batch_size ({cfg.batch_size}) must be a multiple of train.per_device_batch_size "
            f"({cfg.per_device_batch_size}) x world size ({world_size}) = {per_step}, so that gradient "
            f"accumulation keeps the effective batch exact")
    steps_per_epoch = n_examples // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the dataset has {n_examples} examples, fewer than train.batch_size ({cfg.batch_size})")
    return cfg.batch_size // per_step, steps_per_epoch, cfg.max_steps or max(1, round(cfg.epochs * steps_per_epoch))


def run_fingerprint(cfg: TrainConfig, precision: str, n_examples: int, extra: dict) -> dict:
    """The caller's fingerprint plus what the engine knows the result depends on: the TrainConfig fields but
    RESULT_NEUTRAL_KEYS (precision as resolved on this device) and the dataset size."""
    if clash := {"train", "examples"} & extra.keys():
        raise ValueError(f"fingerprint keys {sorted(clash)} are the engine's own")
    settings = {k: v for k, v in asdict(cfg).items() if k not in RESULT_NEUTRAL_KEYS}
    return {**extra, "train": {**settings, "precision": precision}, "examples": n_examples}


def place_models(models: dict[str, nn.Module], trainable: list[str], frozen_mode: str, d) -> dict[str, nn.Module]:
    """Every model on the device; trainable ones in train mode (DDP-wrapped when world_size > 1), the others
    frozen (requires_grad off) in eval mode, or train mode with frozen_mode "train"."""
    placed = {}
    for name, model in models.items():
        model.to(d.device)
        if name in trainable:
            model.train()
            if d.world_size > 1:
                model = DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        else:
            model.train(frozen_mode == "train").requires_grad_(False)
        placed[name] = model
    return placed


def seed_all(seed: int, rank: int, step: int, generator: torch.Generator) -> None:
    """Seed python, numpy, torch (and CUDA) and ctx.generator from (seed, rank, step): distinct streams."""
    global_seed, generator_seed = np.random.SeedSequence([seed, rank, step]).generate_state(2)
    random.seed(int(global_seed))
    np.random.seed(int(global_seed))
    torch.manual_seed(int(global_seed))
    generator.manual_seed(int(generator_seed))


def check_step_keys(keys: tuple[list, list] | None, losses: dict, metrics: dict, step: int) -> tuple[list, list]:
    """The (loss names, metric names) of this step, checked against the first step's `keys`."""
    new = (list(losses), list(metrics))
    if keys is None:
        reserved = {"step", "epoch", "loss", "tokens_per_s"}
        clash = [k for k in metrics if k in reserved or k.startswith(("loss/", "lr/"))]
        if not losses or clash:
            raise ValueError(f"step_fn must return at least one loss and metric names other than "
                             f"{sorted(reserved)}, loss/*, lr/* (got losses {new[0]}, metrics {new[1]})")
    elif new != keys:
        raise ValueError(f"step_fn returned losses {new[0]} and metrics {new[1]} at step {step}, but "
                         f"{keys[0]} and {keys[1]} before: the keys must stay the same")
    return new


class Engine:
    def __init__(self, cfg: TrainConfig, models: dict[str, nn.Module], trainable: list[str], dataset,
                 collate_fn: Callable, step_fn: Callable, *, lengths=None, fingerprint: dict | None = None):
        self.cfg, self.dataset, self.collate_fn, self.step_fn = cfg, dataset, collate_fn, step_fn
        self.dist = d = init_distributed()
        self.is_main = d.is_main
        self.n_examples = len(dataset)
        self.accum, self.steps_per_epoch, self.total_steps = plan_steps(cfg, self.n_examples, d.world_size)
        if cfg.group_by_length and (lengths is None or len(lengths) != self.n_examples):
            raise ValueError(f"train.group_by_length needs `lengths` with one entry per example ({self.n_examples})")
        self.lengths = np.asarray(lengths) if cfg.group_by_length else None
        self.precision = resolve_precision(cfg.precision, d.device)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.fingerprint = run_fingerprint(cfg, self.precision, self.n_examples, fingerprint or {})
        self.trainable = list(trainable)
        lrs = learning_rates(cfg, self.trainable, models)
        self.models = place_models(models, self.trainable, cfg.frozen_mode, d)
        self.optimizers, self.schedulers, self.opt_params = {}, {}, {}
        for name, lr in lrs.items():
            groups = param_groups(self.unwrap(name), cfg.weight_decay)
            if not groups:
                raise ValueError(f"trainable model {name!r} has no parameters with requires_grad")
            self.optimizers[name] = opt = make_optimizer(cfg.optimizer, groups, lr, cfg.adam_eps)
            self.schedulers[name] = make_scheduler(opt, cfg.lr_schedule, cfg.warmup_ratio, self.total_steps)
            self.opt_params[name] = [p for g in groups for p in g["params"]]
        self.scaler = torch.amp.GradScaler(d.device.type, enabled=self.precision == "fp16")
        self.generator = torch.Generator(device=d.device)
        self.params = {
            name: {"total": sum(p.numel() for p in m.parameters()),
                   "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad)}
            for name, m in models.items()}
        self.step_keys = None  # (loss names, metric names), fixed by the first step

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

    def train(self, save_models: Callable[[], None] | None = None) -> dict:
        """Claim work_dir with the fingerprint, train to total_steps (resuming), checkpointing every
        checkpoint_every steps and at the end; then on rank 0: `save_models()` (the final models), metrics.jsonl
        and train_summary.json (written last: it marks a complete run) in output_dir, and prune the checkpoints
        to the final one (or none, cfg.keep_final_checkpoint). train_summary.json: train_seconds (synchronised
        loop time over resumed segments, checkpoint writing excluded), train_cpu_seconds (this process's CPU
        time over the same segments), steps, tokens, examples, params, world_size, precision, batch sizes, and
        `choices` (the settings of CHOICE_KEYS)."""
        cfg, d, work = self.cfg, self.dist, Path(self.cfg.work_dir)
        if d.is_main:
            claim_work_dir(work, self.fingerprint)
            for stale in work.glob(".tmp-checkpoint-*"):  # a checkpoint whose writing was cut short
                shutil.rmtree(stale)
        barrier()
        seed_all(cfg.seed, d.rank, 0, self.generator)
        state = self.resume(work)
        metrics_log = MetricsLog(work / "metrics.jsonl", state.step, self.steps_per_epoch, d.is_main)
        loader = DataLoader(
            self.dataset, batch_sampler=MicroBatches(self, self.lengths, state.step), collate_fn=self.collate_fn,
            num_workers=cfg.num_workers, pin_memory=d.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed))  # own generator: leaves the global RNG untouched
        batches = iter(loader)
        ctx = StepContext(state.step, 0, 0, self.total_steps, self.generator, d.device, d.rank, d.world_size)
        synchronize(d.device)
        clock = Stopwatch(state)
        with tqdm(total=self.total_steps, initial=state.step, disable=not d.is_main, desc="train",
                  dynamic_ncols=True) as bar:
            for step in range(state.step, self.total_steps):
                ctx.step, ctx.epoch = step, step // self.steps_per_epoch
                totals = self.forward_backward(batches, ctx)
                lrs = self.optimizer_step()
                state.add_step(totals.logged(), totals.tokens)
                last = state.step == self.total_steps
                if state.step % cfg.log_every == 0 or last:
                    metrics_log.write(state, lrs, clock.seconds()[0])
                if state.step % cfg.checkpoint_every == 0 or last:
                    synchronize(d.device)
                    clock.stop()  # the clocks stop while the checkpoint is written
                    self.write_checkpoint(work, state)
                    clock.start()
                bar.set_postfix(loss=f"{sum(totals.losses.values()):.4f}", refresh=False)
                bar.update()
        synchronize(d.device)
        wall, cpu = clock.seconds()
        summary = {
            "train_seconds": wall, "train_cpu_seconds": cpu, "steps": state.step,
            "epochs": state.step / self.steps_per_epoch, "examples": state.step * cfg.batch_size,
            "tokens": int(state.tokens), "world_size": d.world_size,
            **d.hardware(),  # device, device_count: the tables' captions name them
            "precision": self.precision, "batch_size": cfg.batch_size,
            "per_device_batch_size": cfg.per_device_batch_size, "grad_accum_steps": self.accum, "params": self.params,
            "choices": {k: getattr(cfg, k) for k in CHOICE_KEYS},
        }
        if d.is_main:
            out = Path(cfg.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            if save_models is not None:
                save_models()
            atomic_write_bytes(out / "metrics.jsonl", (work / "metrics.jsonl").read_bytes())
            atomic_write_json(out / "train_summary.json", summary)
            prune(work, 1 if cfg.keep_final_checkpoint else 0)
        barrier()
        return summary

    def forward_backward(self, batches, ctx: StepContext) -> StepTotals:
        """All micro-steps of one optimizer step; each micro-batch loss is scaled by 1 / accumulation."""
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
                self.step_keys = check_step_keys(self.step_keys, losses, metrics, ctx.step)
                self.scaler.scale(sum(losses.values()) / self.accum).backward()
            row = torch.stack([*(as_scalar(v, device) / self.accum for v in losses.values()),
                               *(as_scalar(v, device) / self.accum for v in metrics.values()),
                               count_tokens(batch, device)])
            total = row if total is None else total + row
        if dist.is_initialized():  # also makes a NaN on any rank visible to all
            dist.all_reduce(total)
            total[:-1] /= self.dist.world_size
        values, (loss_keys, metric_keys) = total.tolist(), self.step_keys
        totals = StepTotals(dict(zip(loss_keys, values)), dict(zip(metric_keys, values[len(loss_keys):])), values[-1])
        if bad := {k: v for k, v in totals.losses.items() if not math.isfinite(v)}:
            raise NonFiniteLossError(
                f"non-finite loss at step {ctx.step} (0-based optimizer step): {bad}; no checkpoint was written "
                f"for it, the newest one in {self.cfg.work_dir} is the last good state")
        return totals

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

    def write_checkpoint(self, work: Path, state: LoopState) -> None:
        d, tensors, trainer = self.dist, None, None
        if d.is_main:
            tensors = {name: trained_tensors(self.unwrap(name)) for name in self.trainable}
            trainer = {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                       "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                       "scaler": self.scaler.state_dict()}
        save_checkpoint(work, state, rank=d.rank, world_size=d.world_size, rng=rng_state(self.generator, d.device),
                        tensors=tensors, trainer=trainer)

    def resume(self, work: Path) -> LoopState:
        """Load the newest checkpoint that reads (edad_core.checkpointing.load_newest) into the models,
        optimizers, schedulers, GradScaler and RNGs and return its loop state; a fresh state without one."""
        ckpt = load_newest(work, self.trainable, rank=self.dist.rank, world_size=self.dist.world_size,
                           device=self.dist.device)
        if ckpt is None:
            return LoopState()
        for name in self.trainable:
            load_trained_tensors(self.unwrap(name), ckpt.tensors[name], ckpt.path / f"model-{name}.safetensors")
            self.optimizers[name].load_state_dict(ckpt.trainer["optimizers"][name])
            self.schedulers[name].load_state_dict(ckpt.trainer["schedulers"][name])
        self.scaler.load_state_dict(ckpt.trainer["scaler"])
        if ckpt.rng is not None:
            set_rng_state(ckpt.rng, self.generator, self.dist.device)
        else:
            log.warning("%s was written by another number of processes: random streams start afresh", ckpt.path)
            seed_all(self.cfg.seed, self.dist.rank, ckpt.state.step, self.generator)
        if self.is_main:
            log.info("resuming from %s (step %d of %d)", ckpt.path, ckpt.state.step, self.total_steps)
        return ckpt.state
