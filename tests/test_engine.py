"""The training engine: resume bit-identity, DDP == single process, accumulation, NaN guard, optimizer groups,
LR schedules, batch checks, step counts and logs. Tiny models from tests/engine_ddp_worker.py."""

import errno
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from edad_core.checkpointing import CheckpointUnavailable
from edad_core.engine import (
    Engine,
    MicroBatches,
    NonFiniteLossError,
    epoch_batches,
    param_groups,
)
from engine_ddp_worker import ToyData, collate, config, make_models, plain_step

PROJECT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("engine_ddp_worker.py")


def run(cfg, step_fn=plain_step, seed=1, dropout=0.0, data=None, trainable=("net", "aux")):
    models = make_models(seed, dropout)
    with Engine(cfg, models, list(trainable), data or ToyData(), collate, step_fn) as engine:
        summary = engine.train()
    return models, summary, engine


def weights(models):
    return {f"{n}.{k}": v.detach().clone() for n in ("net", "aux") for k, v in models[n].state_dict().items()}


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(log):
    return [{k: v for k, v in rec.items() if k != "tokens_per_s"} for rec in log]


class Noisy:
    """Uses every random stream the engine restores: dropout (torch), ctx.generator, python and numpy."""

    def __init__(self, crash_at=None, nan_at=None):
        self.crash_at, self.nan_at, self.steps = crash_at, nan_at, []

    def __call__(self, models, batch, ctx):
        if ctx.step == self.crash_at:
            raise RuntimeError("simulated crash")
        if ctx.micro_step == 0:
            self.steps.append(ctx.step)
        noise = 0.1 * torch.randn(batch["x"].shape, generator=ctx.generator)
        scale = 1 + 0.1 * random.random() + 0.1 * float(np.random.rand())
        losses, metrics = plain_step(models, dict(batch, x=batch["x"] + noise), ctx)
        losses = {k: v * scale for k, v in losses.items()}
        if ctx.step == self.nan_at:
            losses["net"] = losses["net"] * float("inf")
        return losses, {**metrics, "scale": scale}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])  # fp16 on CPU: GradScaler state is restored too
@pytest.mark.parametrize("optimizer", [{}, {"optimizer": "bert_adam", "adam_eps": 1e-6, "clip_mode": "per_tensor"}])
def test_resume_after_crash_is_bit_identical(tmp_path, precision, optimizer):
    straight, _, _ = run(config(tmp_path / "w1", tmp_path / "o1", precision=precision, **optimizer), Noisy(),
                         dropout=0.2)
    assert sorted(p.name for p in (tmp_path / "w1").iterdir() if p.is_dir()) == ["checkpoint-12"]  # a finished run

    cfg = config(tmp_path / "w2", tmp_path / "o2", precision=precision, **optimizer)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, Noisy(crash_at=7), dropout=0.2)
    assert [p.name for p in (tmp_path / "w2").iterdir() if p.is_dir()] == ["checkpoint-5"]
    data, step_fn = ToyData(), Noisy()
    resumed, summary, _ = run(cfg, step_fn, seed=99, dropout=0.2, data=data)  # other init: must load the checkpoint

    assert step_fn.steps == list(range(5, 12))
    assert len(data.loaded) == 7 * 8  # the 5 finished steps' examples are skipped, not loaded
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log1, log2 = read_log(tmp_path / "o1" / "metrics.jsonl"), read_log(tmp_path / "o2" / "metrics.jsonl")
    assert [r["step"] for r in log2] == [3, 6, 9, 12]  # the crashed run's step-6 line is replaced, not repeated
    assert without_timing(log1) == without_timing(log2)
    assert (summary["steps"], summary["examples"], summary["precision"]) == (12, 96, precision)


def _torchrun(tmp_path, name, *extra):
    path = os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": path}  # 2 threads for 2 ranks: 1 each
    (tmp_path / name).mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--log-dir", str(tmp_path / f"logs-{name}"), "--redirects", "3",
           str(WORKER), str(tmp_path / "work"), str(tmp_path / name), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    logs = {int(p.parent.name): p.read_text() for p in (tmp_path / f"logs-{name}").rglob("stderr.log")}
    return proc, logs


def test_ddp_matches_single_process_and_resumes(tmp_path):
    single, _, _ = run(config(tmp_path / "w1", tmp_path / "o1", per_device_batch_size=4))  # accum 2 vs 2 x 2

    proc, logs = _torchrun(tmp_path, "crashed", "--bad-at", "7")  # NaN on rank 1 only
    assert proc.returncode != 0
    assert all("NonFiniteLossError: non-finite loss at step 7" in logs[r] for r in (0, 1)), logs
    assert [p.name for p in (tmp_path / "work").iterdir() if p.is_dir()] == ["checkpoint-5"]
    assert sorted(p.name for p in (tmp_path / "work" / "checkpoint-5").iterdir()) == [
        "model-aux.safetensors", "model-net.safetensors", "rng-0.pt", "rng-1.pt", "state.json", "trainer.pt"]

    proc, logs = _torchrun(tmp_path, "resumed")
    assert proc.returncode == 0, (proc.stderr, logs)
    ddp = load_file(tmp_path / "resumed" / "weights.safetensors")
    for key, value in weights(single).items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)
    for rank in (0, 1):
        assert json.loads((tmp_path / "resumed" / f"rank-{rank}.json").read_text()) == {"threads": 1, "world_size": 2}
    assert "train: 100%" in logs[0] and "12/12" in logs[0] and "train:" not in logs[1]  # tqdm on rank 0 only
    summary = json.loads((tmp_path / "resumed" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["grad_accum_steps"] == 2 and summary["steps"] == 12
    single_log = read_log(tmp_path / "o1" / "metrics.jsonl")
    ddp_log = read_log(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in ddp_log] == [3, 6, 9, 12]
    for a, b in zip(single_log, ddp_log):  # losses averaged over micro-steps and ranks
        assert a["loss/net"] == pytest.approx(b["loss/net"], rel=1e-5)


@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
def test_accumulation_equals_one_big_batch_and_a_plain_adamw_step(tmp_path, max_grad_norm):
    def first_step(per_device_batch_size):
        folder = tmp_path / str(per_device_batch_size)
        cfg = config(folder, folder, max_steps=1, lr=1e-2, max_grad_norm=max_grad_norm, weight_decay=0.1,
                     per_device_batch_size=per_device_batch_size)
        models, grads = make_models(seed=1), {}
        engine = Engine(cfg, models, ["net", "aux"], ToyData(), collate, plain_step)
        for name, opt in engine.optimizers.items():  # the gradients the optimizer sees (after clipping)
            opt.register_step_pre_hook(lambda opt, args, kwargs, name=name: grads.update(
                {(name, id(p)): p.grad.clone() for g in opt.param_groups for p in g["params"]}))
        engine.train()
        named = {(n, id(p)): f"{n}.{k}" for n in ("net", "aux") for k, p in models[n].named_parameters()}
        return engine.accum, {named[key]: g for key, g in grads.items()}, weights(models)

    manual = make_models(seed=1)
    manual["frozen"].requires_grad_(False)
    data = ToyData()
    batch = collate([data[i] for i in epoch_batches(len(data), 8, seed=7, epoch=0)[0]])
    losses, _ = plain_step(manual, batch, None)
    sum(losses.values()).backward()
    expected_grads = {}
    for name in ("net", "aux"):
        params = list(manual[name].parameters())
        if max_grad_norm is not None:
            assert torch.nn.utils.clip_grad_norm_(params, max_grad_norm) > 2 * max_grad_norm  # clipping acts
        expected_grads.update({f"{name}.{k}": p.grad for k, p in manual[name].named_parameters()})
        decayed = [manual[name].fc1.weight, manual[name].fc2.weight]
        rest = [p for p in params if all(p is not d for d in decayed)]
        torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                          lr=1e-2).step()
    expected = weights(manual)
    for per_device, accum in ((2, 4), (8, 1)):
        got_accum, grads, got = first_step(per_device)
        assert got_accum == accum and grads.keys() == expected_grads.keys()
        for key in expected:
            torch.testing.assert_close(grads[key], expected_grads[key], rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-7)


def test_fp16_clips_unscaled_gradients(tmp_path):
    models, norms = make_models(seed=1), []
    engine = Engine(config(tmp_path, tmp_path, precision="fp16", max_grad_norm=0.5), models, ["net", "aux"], ToyData(),
                    collate, plain_step)
    for opt in engine.optimizers.values():  # called only for steps GradScaler does not skip
        opt.register_step_pre_hook(lambda opt, args, kwargs: norms.append(torch.nn.utils.get_total_norm(
            [p.grad for g in opt.param_groups for p in g["params"]]).item()))
    engine.train()
    assert engine.scaler.get_scale() < 65536.0 and len(norms) > 10  # some steps skipped, most taken
    assert norms == pytest.approx([0.5] * len(norms), rel=1e-4)  # these losses always exceed the clip norm


def test_non_finite_loss_stops_before_checkpointing(tmp_path):
    cfg = config(tmp_path / "w", tmp_path / "o")
    with pytest.raises(NonFiniteLossError, match=r"step 6 .*'net'") as err:
        run(cfg, Noisy(nan_at=6))
    assert "aux" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["checkpoint-5", "metrics.jsonl", "run.json"]
    assert not (tmp_path / "o").exists()
    with (tmp_path / "w" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "lo')  # a line cut by a kill
    step_fn = Noisy()
    _, summary, _ = run(cfg, step_fn)  # the last good checkpoint loads and training completes
    assert step_fn.steps == list(range(5, 12)) and summary["steps"] == 12
    assert [r["step"] for r in read_log(tmp_path / "o" / "metrics.jsonl")] == [3, 6, 9, 12]


def test_no_weight_decay_on_biases_and_norm_weights():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 10))
    model[3].weight = model[0].weight  # tied: one entry
    model[1].bias.requires_grad_(False)
    groups = param_groups(model, 0.01)
    decay, no_decay = ({id(p) for p in g["params"]} for g in groups)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert decay == {id(model[0].weight), id(model[1].weight)}
    assert no_decay == {id(model[2].weight), id(model[2].bias), id(model[3].bias)}


@pytest.mark.parametrize("schedule, factors", [
    ("constant", [1.0] * 10),
    ("linear_warmup", [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]),  # warmup 2 of 10 steps
])
def test_lr_schedules(tmp_path, schedule, factors):
    cfg = config(tmp_path, tmp_path, max_steps=10, lr_schedule=schedule, warmup_ratio=0.2, log_every=1)
    run(cfg)
    log = read_log(tmp_path / "metrics.jsonl")
    assert [r["lr/net"] for r in log] == pytest.approx([1e-2 * f for f in factors])
    assert [r["lr/aux"] for r in log] == pytest.approx([3e-3 * f for f in factors])


def test_bad_settings_name_their_keys(tmp_path, caplog):
    keys = r"train\.batch_size \(10\).*train\.per_device_batch_size \(4\).*world size \(1\)"
    with pytest.raises(ValueError, match=keys):
        run(config(tmp_path, tmp_path, batch_size=10, per_device_batch_size=4))
    with pytest.raises(ValueError, match=r"train\.lr .*\['aux'\]"):
        run(config(tmp_path, tmp_path, lr={"net": 1e-3}))
    with pytest.raises(ValueError, match=r"train\.precision = 'fp8'"):
        config(tmp_path, tmp_path, precision="fp8")
    for key, value in (("optimizer", "adam"), ("clip_mode", "layer"), ("frozen_mode", "off"), ("adam_eps", 0)):
        with pytest.raises(ValueError, match=rf"train\.{key} = {value!r}: must be"):
            config(tmp_path, tmp_path, **{key: value})
    run(config(tmp_path / "w", tmp_path / "o", max_steps=2))
    state_file = tmp_path / "w" / "checkpoint-2" / "state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "world_size": 4}))
    with caplog.at_level("WARNING"):  # resumable, without its RNG streams
        assert run(config(tmp_path / "w", tmp_path / "o", max_steps=2))[1]["steps"] == 2
    assert "another number of processes: random streams start afresh" in caplog.text


def test_a_changed_fingerprint_starts_over_naming_the_changed_keys(tmp_path, caplog):
    """Checkpoints resume only the run that wrote them: a changed setting (or the caller's part of the
    fingerprint) removes them, the log names each changed key, and the result is the new run's; the log and
    checkpoint intervals are left out of the fingerprint."""
    new_lr = {"net": 2e-2, "aux": 3e-3}
    straight, _, _ = run(config(tmp_path / "w1", tmp_path / "o1", lr=new_lr), Noisy(), dropout=0.2)
    cfg = config(tmp_path / "w2", tmp_path / "o2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, Noisy(crash_at=7), dropout=0.2)
    with pytest.raises(RuntimeError, match="simulated crash"):  # other intervals: it resumes
        step_fn = Noisy(crash_at=6)
        run(config(tmp_path / "w2", tmp_path / "o2", log_every=2, checkpoint_every=4), step_fn, dropout=0.2)
    assert step_fn.steps == [5] and "holds another run" not in caplog.text
    step_fn = Noisy()
    with caplog.at_level("WARNING"):
        changed, _, _ = run(config(tmp_path / "w2", tmp_path / "o2", lr=new_lr), step_fn, dropout=0.2)
    assert step_fn.steps == list(range(12))
    assert "holds another run's checkpoints (train.lr.net: 0.01 -> 0.02)" in caplog.text
    a, b = weights(straight), weights(changed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert without_timing(read_log(tmp_path / "o1" / "metrics.jsonl")) == without_timing(
        read_log(tmp_path / "o2" / "metrics.jsonl"))

    def with_source(source):
        step_fn = Noisy()
        with Engine(config(tmp_path / "w3", tmp_path / "o3", max_steps=2), make_models(1), ["net", "aux"], ToyData(),
                    collate, step_fn, fingerprint={"source": {"sha256": source}}) as engine:
            engine.train()
        return step_fn.steps

    assert with_source("aa") == [0, 1] and with_source("aa") == []  # finished: it resumes at its end
    assert with_source("bb") == [0, 1] and "(source.sha256: 'aa' -> 'bb')" in caplog.text
    with pytest.raises(ValueError, match=r"fingerprint keys \['train'\] are the engine's own"):
        Engine(cfg, make_models(1), ["net"], ToyData(), collate, plain_step, fingerprint={"train": 1})


TRANSIENT = [OSError(errno.EIO, "Input/output error"), OSError(errno.ENOSPC, "No space left on device"),
             InterruptedError(errno.EINTR, "Interrupted system call")]


def test_a_transient_read_error_keeps_every_checkpoint(tmp_path, monkeypatch):
    """Intact checkpoints that fail to read for a reason other than their content (an I/O error, a full disk, an
    interrupted read, on any of their files or on run.json): the run stops, naming the file and the error, and
    every checkpoint stays; once the storage reads again the run resumes from the newest."""
    straight, _, _ = run(config(tmp_path / "w1", tmp_path / "o1"), Noisy(), dropout=0.2)
    cfg = config(tmp_path / "w2", tmp_path / "o2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, Noisy(crash_at=11), dropout=0.2)
    work = tmp_path / "w2"
    before = {p: p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    assert {p.parent.name for p in before} == {"w2", "checkpoint-5", "checkpoint-10"}
    read_bytes, read_text = Path.read_bytes, Path.read_text

    def failing(target, error):
        def read(path, *args, **kwargs):
            if path.name == target:
                raise error
            return (read_text if target == "run.json" else read_bytes)(path, *args, **kwargs)
        return read

    for error in TRANSIENT:
        for target in ("trainer.pt", "model-aux.safetensors", "rng-0.pt", "state.json", "run.json"):
            with monkeypatch.context() as patch:
                patch.setattr(Path, "read_text" if target == "run.json" else "read_bytes", failing(target, error))
                with pytest.raises(OSError if target == "run.json" else CheckpointUnavailable,
                                   match=re.escape(error.strerror)) as raised:
                    run(cfg, Noisy())
            if target != "run.json":
                assert "checkpoint-10 could not be read" in str(raised.value), raised.value
            assert {p: p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()} == before, (error, target)
    step_fn = Noisy()
    resumed, _, _ = run(cfg, step_fn, seed=99, dropout=0.2)
    assert step_fn.steps == [10, 11]
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_is_independent_of_world_size_and_groups_lengths():
    lengths = np.random.default_rng(0).integers(1, 100, 1000)
    for lens in (None, lengths):
        a, b = epoch_batches(1000, 16, 3, 0, lens), epoch_batches(1000, 16, 3, 1, lens)
        assert a.shape == (62, 16) and len(set(a.ravel())) == 992 and not np.array_equal(a, b)
        assert np.array_equal(a, epoch_batches(1000, 16, 3, 0, lens))
    grouped = lengths[epoch_batches(1000, 16, 3, 0, lengths)]
    assert (np.diff(grouped, axis=1) <= 0).all()  # sorted inside each batch
    spans = sorted((row.min(), row.max()) for row in grouped)  # batches cover disjoint length ranges per chunk
    assert np.mean([hi - lo for lo, hi in spans]) < 10

    def micro_batches(world, rank, per_device):
        cfg = SimpleNamespace(batch_size=8, per_device_batch_size=per_device, seed=3)
        engine = SimpleNamespace(cfg=cfg, total_steps=9, accum=8 // (per_device * world), steps_per_epoch=4,
                                 n_examples=35, dist=SimpleNamespace(world_size=world, rank=rank))
        return list(MicroBatches(engine, None, start=2))

    single = micro_batches(1, 0, 2)
    ranks = [micro_batches(2, r, 2) for r in (0, 1)]
    assert len(single) == 7 * 4 and all(len(r) == 7 * 2 for r in ranks)
    for step in range(7):
        union = sorted(i for r in ranks for mb in r[2 * step : 2 * step + 2] for i in mb)
        assert union == sorted(i for mb in single[4 * step : 4 * step + 4] for i in mb)


def test_step_counts_logs_and_summary(tmp_path):
    data, seen = ToyData(n=35), []

    def step_fn(models, batch, ctx):
        losses, metrics = plain_step(models, batch, ctx)
        seen.append((ctx.step, losses["net"].item()))
        return losses, metrics

    cfg = config(tmp_path / "w", tmp_path / "o", epochs=2.5, per_device_batch_size=4)
    _, summary, engine = run(cfg, step_fn, data=data)
    assert (engine.steps_per_epoch, engine.total_steps) == (4, 10)  # 35 // 8; the last 3 examples dropped
    assert Engine(config(tmp_path / "x", tmp_path / "x", max_steps=7), make_models(1), ["net"], data, collate,
                  step_fn).total_steps == 7
    models = make_models(1)
    assert summary == {
        "train_seconds": summary["train_seconds"], "train_cpu_seconds": summary["train_cpu_seconds"], "steps": 10, "epochs": 2.5, "examples": 80,
        "tokens": sum(data.lengths[i] for i in data.loaded), "world_size": 1, **engine.dist.hardware(),
        "precision": "fp32",
        "batch_size": 8, "per_device_batch_size": 4, "grad_accum_steps": 2,
        "params": {"net": {"total": 129, "trainable": 129}, "aux": {"total": 129, "trainable": 129},
                   "frozen": {"total": 20, "trainable": 0}},
        "choices": {"optimizer": "adamw", "adam_eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0,
                    "clip_mode": "global", "frozen_mode": "eval", "group_by_length": False,
                    "pad_to_max_length": False}}
    assert summary["train_seconds"] > 0 and summary["train_cpu_seconds"] > 0 and sum(p.numel() for p in models["net"].parameters()) == 129
    assert len(data.loaded) == 80
    assert json.loads((tmp_path / "o" / "train_summary.json").read_text()) == summary

    log = read_log(tmp_path / "o" / "metrics.jsonl")
    assert [r["step"] for r in log] == [3, 6, 9, 10]
    assert set(log[0]) == {"step", "epoch", "loss", "loss/net", "loss/aux", "abs_y", "lr/net", "lr/aux", "tokens_per_s"}
    per_step = [np.mean([v for s, v in seen if s == step]) for step in range(10)]  # mean over micro-steps
    for rec, steps in zip(log, [range(0, 3), range(3, 6), range(6, 9), range(9, 10)]):
        assert rec["loss/net"] == pytest.approx(np.mean([per_step[s] for s in steps]), rel=1e-6)
        assert rec["epoch"] == rec["step"] / 4 and rec["tokens_per_s"] > 0
    assert log == read_log(tmp_path / "w" / "metrics.jsonl")

    assert run(cfg, step_fn, data=data)[1]["steps"] == 10  # a finished run resumes at its end: nothing to do
    assert len(seen) == 20


def test_finished_run_keeps_only_its_final_checkpoint_or_none(tmp_path):
    def train(seed, save_models=None):
        models = make_models(seed)
        models["aux"].fc2.bias.requires_grad_(False)  # frozen: rebuilt from its source, not checkpointed
        with Engine(cfg, models, ["net", "aux"], ToyData(), collate, plain_step) as engine:
            summary = engine.train(save_models=save_models)
        return models, summary

    cfg, order = config(tmp_path / "keep", tmp_path / "o1"), []
    models, _ = train(1, lambda: order.append(sorted(p.name for p in Path(cfg.output_dir).iterdir())))
    assert order == [[]]  # the final models are saved before metrics.jsonl and train_summary.json
    assert [p.name for p in (tmp_path / "keep").iterdir() if p.is_dir()] == ["checkpoint-12"]
    saved = load_file(tmp_path / "keep" / "checkpoint-12" / "model-aux.safetensors")
    assert "fc2.bias" not in saved and "fc2.weight" in saved

    rerun, summary = train(5)  # another init; resumes at the end: no step, the checkpoint's weights
    assert summary["steps"] == 12
    assert torch.equal(rerun["aux"].fc1.weight, models["aux"].fc1.weight)

    run(config(tmp_path / "none", tmp_path / "o2", keep_final_checkpoint=False))
    assert not list((tmp_path / "none").glob("checkpoint-*"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [
    lambda c: _truncate(c / "model-net.safetensors"),
    lambda c: (c / "state.json").write_text(""),
    lambda c: (c / "state.json").write_text('{"step": 10, "tok'),
    lambda c: (c / "trainer.pt").unlink(),
    lambda c: _truncate(c / "rng-0.pt"),
], ids=["truncated-safetensors", "empty-json", "partial-json", "missing-trainer", "truncated-rng"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, caplog):
    straight, _, _ = run(config(tmp_path / "w1", tmp_path / "o1"), Noisy(), dropout=0.2)
    cfg = config(tmp_path / "w2", tmp_path / "o2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, Noisy(crash_at=11), dropout=0.2)
    damage(tmp_path / "w2" / "checkpoint-10")
    step_fn = Noisy()
    resumed, _, _ = run(cfg, step_fn, seed=99, dropout=0.2)
    assert step_fn.steps == list(range(5, 12))  # from checkpoint-5
    assert "checkpoint-10 does not load" in caplog.text
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_with_no_readable_checkpoint_the_run_starts_over(tmp_path, caplog):
    straight, _, _ = run(config(tmp_path / "w1", tmp_path / "o1"), Noisy(), dropout=0.2)
    cfg = config(tmp_path / "w2", tmp_path / "o2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, Noisy(crash_at=11), dropout=0.2)
    for step in (5, 10):
        (tmp_path / "w2" / f"checkpoint-{step}" / "state.json").write_text("")
    step_fn = Noisy()
    again, _, _ = run(cfg, step_fn, dropout=0.2)
    assert step_fn.steps == list(range(12)) and "loads: starting over from step 0" in caplog.text
    a, b = weights(straight), weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
