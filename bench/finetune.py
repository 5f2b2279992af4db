"""NER fine-tuning speed: training and inference sentences/s of the mini and paper teachers and students, through
the workflow's own fine-tuning (edad_core.ner.finetune_and_evaluate: windows, length-grouped batches, dynamic
padding, the engine, evaluation on devel and test).

Models: the exBERT teacher of each profile (mini: MiniLM with its extension; paper: bert-base shapes with the 33%
extension, random weights) and its extended student, all with the 48,180-id vocab. Data: the first
--sentences sentences of each split of the first configured NER dataset, read from the offline mirror. The
profile's fine-tuning settings, one epoch. The four models run in turn (A B C D A B C D ...), --repeats times.

    python bench/finetune.py                          # 64 sentences per split, 2 repeats: about two minutes
    python bench/finetune.py --sentences 500 --repeats 3

Per model one JSON line: training windows/s (the engine's train_seconds), inference sentences/s on test (model
forward with batching, as result.json's inference_examples_per_s), each median, min and max; then one summary line.
"""

import shutil
import tempfile
from pathlib import Path

import harness
from edad_core.modeling import ExBertForPreTraining
from edad_core.ner import finetune_and_evaluate
from edad_core.ner_data import benchmark_files, prepare_ner_dataset
from edad_core.stages import EXTENSION_KEYS, build_student


def save_models(profile: str, config: dict, root: Path) -> dict[str, Path]:
    """The profile's exBERT teacher and its student as model folders with the extended tokenizer beside them."""
    base = harness.base_model(profile, config, root / "base")
    tokenizer = harness.extended_tokenizer(base, config["vocab"]["ext_size"], root / "tokenizer")
    teacher_settings = config["models"]["teacher"]
    teacher = ExBertForPreTraining.from_bert(
        base, ext_vocab_size=config["vocab"]["ext_size"], **{k: teacher_settings[k] for k in EXTENSION_KEYS})
    student = build_student(config["models"]["student"], teacher.config)
    folders = {}
    for role, model in (("teacher", teacher), ("student", student)):
        folders[role] = root / role
        model.save_pretrained(folders[role])
        for item in tokenizer.iterdir():
            shutil.copy2(item, folders[role] / item.name)
    return folders


def main():
    p = harness.parser(__doc__)
    p.add_argument("--profiles", nargs="+", choices=harness.PROFILES, default=list(harness.PROFILES))
    p.add_argument("--sentences", type=int, default=64, help="first N sentences of each split")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--mirror", default=str(harness.PROJECT.parent / "shared" / "mirror"))
    args = harness.parse(p)
    with tempfile.TemporaryDirectory(prefix="edad-ner-bench-") as root:
        measure(args, Path(root))


def measure(args, root: Path) -> None:
    """The NER data, models and runs in `root`, their figures printed."""
    ner = harness.profile_config("paper")["ner"]
    dataset = ner["datasets"][0]
    files = benchmark_files(ner["base_url"], dataset, ner["splits"])
    prepare_ner_dataset(dataset, files=files, out_dir=root / "ner", download_dir=root / "download",
                        sha256={s: ner["sha256"][f"{dataset}/{s}.tsv"] for s in ner["splits"]}, mirror=args.mirror,
                        max_sentences=args.sentences, progress=False)
    runs, results = {}, {}
    for profile in args.profiles:
        config = harness.profile_config(profile)
        settings = {**config["finetune"], "epochs": {"teacher": 1, "student": 1}}
        for role, folder in save_models(profile, config, root / profile).items():
            name = f"{profile} {role}"
            results[name] = []

            def run(name=name, folder=folder, role=role, settings=settings):
                k = len(results[name])
                result = finetune_and_evaluate(name=name, source=str(folder), role=role, dataset=dataset,
                                               data_dir=root / "ner", seed=1, settings=settings,
                                               output_dir=root / "out" / f"{name}{k}", work_dir=root / "work" / f"{name}{k}")
                results[name].append(result)
                return result["train_seconds"]
            runs[name] = run
    timings = harness.interleaved(runs, args.repeats)
    parts = []
    for name, t in timings.items():
        timed = results[name][1:]  # without the warm-up round
        train = harness.spread([r["train_examples_per_s"] for r in timed])
        infer = harness.spread([r["inference_examples_per_s"] for r in timed])
        harness.emit({"model": name, "sentences": args.sentences, "threads": args.threads,
                      "params": timed[0]["params"], "train_windows_per_s": train,
                      "inference_sentences_per_s": infer, "load": t["load"]})
        parts.append(f"{name} train {train['median']:.1f} / infer {infer['median']:.1f}")
    harness.summary_line("finetune", f"sentences/s ({args.sentences} per split, {args.threads} threads): " + "; ".join(parts))


if __name__ == "__main__":
    main()
