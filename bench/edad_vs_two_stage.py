"""EDAD against the two-stage baseline (exBERT adaptation, then TinyBERT GD from the adapted teacher), timed on the
engine as the workflow times them: `train_seconds` of each run, the training loop only (docs/design.md decision 4),
and `train_cpu_seconds`, the process's CPU time in the same loop (steadier than wall time on a shared machine).

The same data, models and number of optimizer steps for the three runs; the profile's own settings (config.yaml,
and config/mini.yaml over it for `mini`: BertAdam, per-tensor clipping, batches padded to max_seq_length, the GD
teacher in train mode, the alpha schedule of the report's EDAD row). The runs are interleaved (adapt, distill,
EDAD, adapt, ...) after one untimed round, and each repeat's ratio EDAD / (adaptation + distillation) is taken from
runs that ran back to back.

    python bench/edad_vs_two_stage.py                                   # mini sizes, about two minutes on 2 idle cores
    python bench/edad_vs_two_stage.py --profile paper --steps 3 --batch 4 --repeats 3

Mini: MiniLM (the mini profile's teacher) with its extension, the mini student, 64 tokens. Paper: bert-base shapes
(random weights) with the 33% extension and the 4L-312H student, 128 tokens. Both with the full 48,180-id vocab;
the examples come from a made-up corpus (speed does not depend on the text when batches are padded), or from the
workflow's own with --data and --tokenizer (e.g. results/mini/pretrain_data/extended, results/mini/vocab/extended).
Prints one JSON line per run and per stage, then one summary line.
"""

import dataclasses
import shutil
import tempfile
from pathlib import Path

import harness
from edad_core.engine import TrainConfig
from edad_core.stages import run_training

STAGES = ("adapt", "distill", "edad")


def train_settings(config: dict, stage: str, variant: str, steps: int, batch: int) -> dict:
    """The profile's TrainConfig fields for one stage (as rules/common.smk picks them), at `steps` optimizer steps
    of `batch` examples in one process, checkpointing only at the end (outside the timed loop)."""
    merged = {**config["train"], **config["train"][stage]}
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("output_dir", "work_dir")]
    settings = {k: merged[k] for k in fields if k in merged}
    settings = {k: v[variant] if isinstance(v, dict) and variant in v else v for k, v in settings.items()}
    return {**settings, "max_steps": steps, "batch_size": batch, "per_device_batch_size": batch,
            "checkpoint_every": steps, "log_every": steps, "keep_final_checkpoint": False}


def main():
    p = harness.parser(__doc__)
    p.add_argument("--profile", choices=harness.PROFILES, default="mini")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps of each run")
    p.add_argument("--batch", type=int, help="examples per step (default: the profile's per-device batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", help="pretraining examples folder of the extended vocab (default: made up)")
    p.add_argument("--tokenizer", help="its tokenizer folder (with --data)")
    p.add_argument("--keep", help="keep the models and data in this folder (default: a temporary one)")
    args = harness.parse(p)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        measure(args, Path(args.keep))
        return
    with tempfile.TemporaryDirectory(prefix="edad-bench-") as root:
        measure(args, Path(root))


def measure(args, root: Path) -> None:
    """The runs in `root` (models, data, outputs), their figures printed."""
    config = harness.profile_config(args.profile)
    batch = args.batch or config["train"]["per_device_batch_size"]

    base = harness.base_model(args.profile, config, root / "base")
    if args.data:
        data, tokenizer = Path(args.data), Path(args.tokenizer)
    else:
        tokenizer = harness.extended_tokenizer(base, config["vocab"]["ext_size"], root / "tokenizer")
        length = config["pretrain_data"]["max_seq_length"]
        data = harness.synthetic_examples(tokenizer, 2 * batch * args.steps * length, length, root / "data")
    teacher = {**config["models"]["teacher"], "base": base}
    mlm = config["pretrain_data"]["mlm_probability"]
    schedule = config["report"]["edad_schedule"]
    adapted = root / "adapt" / "teacher"
    runs = {
        "adapt": {"stage": "adapt", "method": "exbert", "teacher": teacher, "mlm_probability": mlm,
                  "train": train_settings(config, "adapt", "exbert", args.steps, batch)},
        "distill": {"stage": "distill", "teacher_model": str(adapted), "student": config["models"]["student"],
                    "train": train_settings(config, "distill", "exbert", args.steps, batch)},
        "edad": {"stage": "edad", "schedule": schedule, "teacher": teacher, "student": config["models"]["student"],
                 "mlm_probability": mlm, "train": train_settings(config, "edad", schedule, args.steps, batch)},
    }
    cpu_seconds = {stage: [] for stage in STAGES}

    def timed_run(stage: str):
        def run():
            k = len(cpu_seconds[stage])
            saves = stage == "adapt" and k == 0  # the adapted teacher that distillation reads; no other model
            description = runs[stage] if saves else {**runs[stage], "repeat": k + 1}
            output = root / stage if saves else root / "repeats" / f"{stage}{k}"
            summary = run_training(description, data_dir=data, tokenizer_dir=tokenizer, output_dir=output,
                                   work_dir=root / "work" / f"{stage}{k}")
            shutil.rmtree(root / "work" / f"{stage}{k}", ignore_errors=True)
            cpu_seconds[stage].append(summary["train_cpu_seconds"])
            harness.emit({"profile": args.profile, "stage": stage, "run": k, "train_seconds": summary["train_seconds"],
                          "train_cpu_seconds": summary["train_cpu_seconds"], "load": harness.load_average()})
            return summary["train_seconds"]
        return run

    # the untimed round first saves the adapted teacher that distillation reads
    timings = harness.interleaved({stage: timed_run(stage) for stage in STAGES}, args.repeats)
    seconds = {stage: timings[stage]["seconds"] for stage in STAGES}
    cpu_seconds = {stage: values[1:] for stage, values in cpu_seconds.items()}  # without the untimed round
    ratios = {clock: harness.ratio_spread(values["edad"], [a + d for a, d in zip(values["adapt"], values["distill"])])
              for clock, values in (("wall", seconds), ("cpu", cpu_seconds))}
    common = {"profile": args.profile, "steps": args.steps, "batch": batch,
              "length": config["pretrain_data"]["max_seq_length"], "threads": args.threads}
    for stage in STAGES:
        harness.emit({**common, "stage": stage, "train_seconds": harness.spread(seconds[stage]),
                      "train_cpu_seconds": harness.spread(cpu_seconds[stage]), "load": timings[stage]["load"]})
    harness.emit({**common, "ratio_edad_to_two_stage": ratios})
    ratio = ratios["wall"]
    med = {stage: harness.spread(seconds[stage])["median"] for stage in STAGES}
    harness.summary_line(
        "edad_vs_two_stage",
        f"{args.profile} {args.steps} steps x {batch}: adapt {med['adapt']:.2f} s + distill {med['distill']:.2f} s "
        f"vs EDAD {med['edad']:.2f} s -> ratio {ratio['median']:.3f} (range {ratio['min']:.3f}-{ratio['max']:.3f}; "
        f"CPU time {ratios['cpu']['median']:.3f}; {args.repeats} repeats, load {min(timings['edad']['load']):.1f}-{max(timings['edad']['load']):.1f})")


if __name__ == "__main__":
    main()
