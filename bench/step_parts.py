"""Where a training step's time goes: the forward (the stage's step function: models and losses), the backward and
the optimizer (the profile's optimizer and clipping) of one step of exBERT adaptation, GD from the adapted teacher
and EDAD, on the models edad_core.stages builds (random weights, the full 48,180-id vocab, a full-length batch).

    python bench/step_parts.py                                   # mini sizes, batch 16 x 64: about a minute
    python bench/step_parts.py --profile paper --batch 4 --threads 1
    python bench/step_parts.py --ops 25                          # and torch.profiler's top 25 operators per stage

The stages run in turn (A B C A B C ...) after a warm-up round. Per stage one JSON line: CPU and wall seconds of
each part (median, min, max); then one summary line with the CPU-time ratio of whole steps EDAD / (adaptation + GD).
"""

import time

import torch
from torch.profiler import ProfilerActivity, profile

import harness
from edad_core.engine import CLIPPERS, make_optimizer, param_groups

STAGES = ("exBERT adaptation", "GD from exBERT", "EDAD")
PARTS = ("forward", "backward", "optimizer")


def main():
    p = harness.parser(__doc__)
    p.add_argument("--profile", choices=harness.PROFILES, default="mini")
    p.add_argument("--batch", type=int, help="examples per step (default: the profile's per-device batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ops", type=int, default=0, help="print torch.profiler's top N operators of one step per stage")
    args = harness.parse(p)
    config = harness.profile_config(args.profile)
    train = config["train"]
    batch = args.batch or train["per_device_batch_size"]
    length = config["pretrain_data"]["max_seq_length"]
    clip = CLIPPERS[train["clip_mode"]]
    builders = harness.stage_steps(args.profile, config)
    generator = torch.Generator().manual_seed(0)
    times = {stage: {part: {"cpu": [], "wall": []} for part in PARTS} for stage in STAGES}

    def timed_step(stage: str):
        step, models = builders[stage]()
        inputs = harness.random_batch(models["teacher"].config.total_vocab_size, batch, length, generator)
        trained = [m for m in models.values() if any(q.requires_grad for q in m.parameters())]
        optimizers = [(make_optimizer(train["optimizer"], param_groups(m, train["weight_decay"]), 1e-4,
                                      train["adam_eps"]), [q for q in m.parameters() if q.requires_grad])
                      for m in trained]

        def optimize():
            for optimizer, params in optimizers:
                clip(params, train["max_grad_norm"])
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        parts = {"forward": lambda: step(models, inputs, harness.step_context(generator))[0],
                 "backward": lambda losses: sum(losses.values()).backward(), "optimizer": lambda _: optimize()}

        def run():
            value = None
            for part in PARTS:
                cpu, wall = time.process_time(), time.perf_counter()
                value = parts[part]() if part == "forward" else parts[part](value)
                times[stage][part]["cpu"].append(time.process_time() - cpu)
                times[stage][part]["wall"].append(time.perf_counter() - wall)
        return run

    runs = {stage: timed_step(stage) for stage in STAGES}
    harness.interleaved(runs, args.repeats)
    totals = {}
    for stage in STAGES:
        for clock in ("cpu", "wall"):
            for part in PARTS:
                del times[stage][part][clock][0]  # the warm-up round
        totals[stage] = [sum(v) for v in zip(*(times[stage][part]["cpu"] for part in PARTS))]
        harness.emit({"profile": args.profile, "batch": batch, "length": length, "threads": args.threads,
                      "stage": stage, **{f"{part}_{clock}_seconds": harness.spread(times[stage][part][clock])
                                         for part in PARTS for clock in ("cpu", "wall")},
                      "step_cpu_seconds": harness.spread(totals[stage]), "load": harness.load_average()})
    ratio = harness.ratio_spread(totals["EDAD"], [a + d for a, d in zip(totals[STAGES[0]], totals[STAGES[1]])])
    if args.ops:
        for stage, run in runs.items():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
                run()
            print(f"== {stage}\n" + profiler.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=args.ops, max_name_column_width=28, max_shapes_column_width=60))
    parts = "; ".join(f"{stage} " + " + ".join(
        f"{part} {harness.spread(times[stage][part]['cpu'])['median']:.3f}" for part in PARTS) for stage in STAGES)
    harness.summary_line(
        "step_parts", f"{args.profile}, {batch} x {length}, {args.threads} threads, CPU s per step: {parts}; EDAD / "
        f"(adaptation + GD) {ratio['median']:.3f} (range {ratio['min']:.3f}-{ratio['max']:.3f})")


if __name__ == "__main__":
    main()
