"""Checks across config keys that a JSON schema cannot express, run by the Snakefile right after schema
validation so that a mistake fails at `snakemake -n`, naming the keys, instead of hours later in its rule.

    from edad_core.config_checks import check_config
    check_config(config)   # raises ConfigError listing every problem found
"""

from __future__ import annotations

import json

from edad_core.download import DownloadError, local_model
from edad_core.ner_data import safe_name
from edad_core.registry import build_registry

# the splits every fine-tuning job reads (edad_core.ner.SPLITS; not imported: it would add seconds to every
# `snakemake -n`, tests/test_config_checks.py keeps the two equal)
SPLITS = ("train", "devel", "test")

# vocab.domain_only_size: below, the specials, the alphabet and its ## forms (several hundred on biomedical text)
# leave no room for merges; above, far past any WordPiece vocabulary in use (BERT's 30,522), the tokenizers trainer
# reserves memory by the size asked (1e9 aborts it: out of memory)
DOMAIN_ONLY_SIZE = (1000, 1_000_000)


class ConfigError(ValueError):
    """One or more config values that do not fit together; the message names each key."""


def base_vocab_size(spec: str, mirror=None) -> int | None:
    """The vocabulary size of a base checkpoint that can be read locally (folder, pkg:, the mirror's or the Hugging
    Face cache's copy), else None (planning never downloads; the vocab rule checks it when it runs)."""
    try:
        folder = local_model(spec, mirror)
    except DownloadError:
        return None
    if folder is None:
        return None
    if (folder / "vocab.txt").is_file():
        with open(folder / "vocab.txt", encoding="utf-8") as f:
            return sum(1 for _ in f)
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text()).get("vocab_size")
    return None


def check_config(config: dict) -> None:
    problems = []
    vocab, train = config["vocab"], config["train"]
    if vocab["ext_size"] >= vocab["total_size"]:
        problems.append(f"vocab.ext_size ({vocab['ext_size']}) must be smaller than vocab.total_size "
                        f"({vocab['total_size']}): the total is the base vocab plus the extension")
    base = config["models"]["teacher"]["base"]
    size = base_vocab_size(base, config["mirror"])
    if size is not None and size + vocab["ext_size"] != vocab["total_size"]:
        problems.append(f"vocab.total_size ({vocab['total_size']}) != the vocab of models.teacher.base {base!r} "
                        f"({size}) + vocab.ext_size ({vocab['ext_size']}) = {size + vocab['ext_size']}")
    per_step = train["per_device_batch_size"] * train["processes"]
    if train["batch_size"] % per_step:
        problems.append(f"train.batch_size ({train['batch_size']}) must be a multiple of "
                        f"train.per_device_batch_size ({train['per_device_batch_size']}) x train.processes "
                        f"({train['processes']}) = {per_step}")
    td = config["task_distill"]
    if td["batch_size"] % td["per_device_batch_size"]:
        problems.append(f"task_distill.batch_size ({td['batch_size']}) must be a multiple of "
                        f"task_distill.per_device_batch_size ({td['per_device_batch_size']}) (one process)")
    if train["gpus"] and train["processes"] > train["gpus"]:
        problems.append(f"train.processes ({train['processes']}) > train.gpus ({train['gpus']}): "
                        "one process per GPU")
    export = config["export"]["ner"]
    datasets = [d if isinstance(d, str) else d["name"] for d in config["ner"]["datasets"]]
    finetuned = config["finetune"]["models"]
    if unknown := [d for d in export["datasets"] or [] if d not in datasets]:
        problems.append(f"export.ner.datasets: {unknown} not in ner.datasets {datasets}")
    if finetuned is not None and (unknown := [r for r in export["rows"] if r not in finetuned]):
        problems.append(f"export.ner.rows: {unknown} not in finetune.models {finetuned} (an export needs its "
                        "fine-tuning)")
    if export["seed"] is not None and export["seed"] not in config["finetune"]["seeds"]:
        problems.append(f"export.ner.seed ({export['seed']}) not in finetune.seeds {config['finetune']['seeds']}")
    # no check of the mirror: an absent one only means downloads (edad_core.download)
    rows = build_registry(config)
    if unknown := [n for n in finetuned or [] if n not in rows]:
        problems.append(f"finetune.models: unknown row(s) {unknown}; the configured rows are {list(rows)}")
    problems += late_failures(config)
    if problems:
        raise ConfigError("config: " + "; ".join(problems))


def late_failures(config: dict) -> list[str]:
    """Values the schema lets through that would fail only in their rule, hours later, or write to the wrong
    place: attention shapes, the domain vocab size, the NER splits and names, the fine-tuning batch, the EDAD
    schedule the report asks for."""
    problems = []
    models = config["models"]
    for who, size, heads in (("student", "hidden_size", "num_attention_heads"),
                             ("student", "ext_hidden_size", "ext_num_attention_heads"),
                             ("teacher", "ext_hidden_size", "ext_num_attention_heads")):
        if models[who][size] % models[who][heads]:
            problems.append(f"models.{who}.{size} ({models[who][size]}) must be a multiple of models.{who}.{heads} "
                            f"({models[who][heads]}): every attention head takes an equal slice")
    low, high = DOMAIN_ONLY_SIZE
    if not low <= (size := config["vocab"]["domain_only_size"]) <= high:
        problems.append(f"vocab.domain_only_size ({size}) must be between {low} and {high:,}")
    ner = config["ner"]
    if missing := [s for s in SPLITS if s not in ner["splits"]]:
        problems.append(f"ner.splits ({ner['splits']}) lacks {missing}: every fine-tuning job reads {list(SPLITS)}")
    for i, item in enumerate(ner["datasets"]):
        try:
            safe_name(item["name"] if isinstance(item, dict) else item, f"ner.datasets[{i}]")
        except ValueError as err:
            problems.append(str(err))
    finetune = config["finetune"]
    if finetune["batch_size"] % finetune["per_device_batch_size"]:
        problems.append(f"finetune.batch_size ({finetune['batch_size']}) must be a multiple of "
                        f"finetune.per_device_batch_size ({finetune['per_device_batch_size']}): each fine-tuning "
                        "job runs on one device and accumulates whole batches")
    schedule, trained = config["report"]["edad_schedule"], config["train"]["edad"]["schedules"]
    if schedule not in trained:
        problems.append(f"report.edad_schedule ({schedule!r}) is not trained: add it to train.edad.schedules {trained}")
    return problems
