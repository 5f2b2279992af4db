"""GPU projection of the paper's training times from FLOPs: each stage's FLOPs per token at paper sizes, counted
by torch.utils.flop_counter (matrix products, forward and backward, from their shapes) on one step of the
stage's own step function (edad_core.stages) with the paper profile's models (bert-base with the 33% extension,
the 4L-312H student, the 48,180-id vocab), then the hours of the paper's run (3 epochs of padded 128-token
examples) on 4 RTX 3090s at --utilisation of their peak, and at 100% (the physical floor), beside the paper's.

    python bench/gpu_projection.py                   # about a minute on 2 CPU cores

Tokens: `corpus.n_tokens` words (500M) x --examples-per-word (0.0138: the mirror's corpus gives 19,168 examples of
at most 128 tokens from 1,388,532 words with the mini vocab's pipeline; BENCHMARKS.md) x 128 positions x 3 epochs.
Peak: 71 TFLOPS per RTX 3090 (dense FP16/BF16 tensor cores with FP32 accumulation, NVIDIA's GA102 whitepaper;
the workflow's precision `auto` trains in bf16 there). The element-wise work (optimizers, dropout, softmax,
LayerNorm) is not counted: the projection is a lower bound at the given utilisation.
Prints one JSON line per stage, then one summary line.
"""

import csv

import torch
from torch.utils.flop_counter import FlopCounterMode

import harness

RTX3090_TFLOPS = 71.0
GPUS = 4
# the paper's hours (edad_core/data/paper_tables.csv, Table 1-2) of each stage, and the tables' rows they make
PAPER_ROWS = {"oiBioBERT adaptation": "oiBioBERT", "oiSciBERT adaptation": "oiSciBERT",
              "exBERT adaptation": "exBERT", "GD from BERT": "BERT_GD", "EDAD": "EDAD"}


def paper_hours() -> dict[str, float]:
    path = harness.PROJECT / "edad_core" / "data" / "paper_tables.csv"
    with path.open() as f:
        return {row["model"]: float(row["time_cost_h"]) for row in csv.DictReader(f) if row["time_cost_h"]}


def flops_per_token(step, models: dict, batch: int, length: int) -> float:
    generator = torch.Generator().manual_seed(0)
    inputs = harness.random_batch(models["teacher"].config.total_vocab_size, batch, length, generator)
    with FlopCounterMode(display=False) as counter:
        losses, _ = step(models, inputs, harness.step_context(generator))
        sum(losses.values()).backward()
    return counter.get_total_flops() / (batch * length)


def main():
    p = harness.parser(__doc__)
    p.add_argument("--profile", choices=harness.PROFILES, default="paper",
                   help="model sizes; mini: FLOPs and their ratio only (the hours are the paper's run)")
    p.add_argument("--batch", type=int, default=4, help="examples of the counted step")
    p.add_argument("--examples-per-word", type=float, default=0.0138)
    p.add_argument("--utilisation", type=float, default=0.4)
    args = harness.parse(p)
    config = harness.profile_config(args.profile)
    paper = harness.profile_config("paper")
    length = config["pretrain_data"]["max_seq_length"]
    positions = paper["corpus"]["n_tokens"] * args.examples_per_word * length * paper["train"]["adapt"]["epochs"]
    published = paper_hours()
    peak = GPUS * RTX3090_TFLOPS * 1e12
    hours = {}
    for stage, build in harness.stage_steps(args.profile, config).items():
        torch.manual_seed(0)
        flops = flops_per_token(*build(), args.batch, length)
        hours[stage] = flops * positions / peak / 3600
        harness.emit({"profile": args.profile, "stage": stage, "gflop_per_token": round(flops / 1e9, 4), **(
            {f"hours_at_{args.utilisation:.0%}": round(hours[stage] / args.utilisation, 2),
             "hours_at_100%": round(hours[stage], 2), "paper_hours": published.get(PAPER_ROWS.get(stage))}
            if args.profile == "paper" else {})})
    two_stage = hours["exBERT adaptation"] + hours["GD from exBERT"]
    if args.profile == "mini":
        harness.summary_line("gpu_projection", f"mini sizes: FLOP ratio EDAD / (exBERT + GD) {hours['EDAD'] / two_stage:.3f}")
        return
    harness.emit({"stage": "exBERT_GD (adaptation + GD)", f"hours_at_{args.utilisation:.0%}":
                  round(two_stage / args.utilisation, 2), "hours_at_100%": round(two_stage, 2),
                  "paper_hours": published["exBERT_GD"]})
    harness.summary_line(
        "gpu_projection",
        f"{positions / 1e9:.2f}G positions, 4 x RTX 3090 at {args.utilisation:.0%} of {RTX3090_TFLOPS:g} TFLOPS: EDAD "
        f"{hours['EDAD'] / args.utilisation:.1f} h vs exBERT + GD {two_stage / args.utilisation:.1f} h (paper 17.4 vs "
        f"21.6); FLOP ratio EDAD / two-stage {hours['EDAD'] / two_stage:.3f} (paper 0.806)")


if __name__ == "__main__":
    main()
