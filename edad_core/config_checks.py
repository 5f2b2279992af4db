"""Checks across config keys that a JSON schema cannot express, run by the Snakefile right after schema
validation so that a mistake fails at `snakemake -n`, naming the keys, instead of hours later in its rule.

    from edad_core.config_checks import check_config
    check_config(config)   # raises ConfigError listing every problem found
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edad_core.download import DownloadError, mirror_root, resolve_model


class ConfigError(ValueError):
    """One or more config values that do not fit together; the message names each key."""


def base_vocab_size(spec: str) -> int | None:
    """The vocabulary size of a base checkpoint that can be read locally (folder or pkg:), else None (a hub id
    is not fetched at planning time; the vocab rule checks it when it runs)."""
    try:
        folder = Path(resolve_model(spec))
    except DownloadError:
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
    size = base_vocab_size(base)
    if size is not None and size + vocab["ext_size"] != vocab["total_size"]:
        problems.append(f"vocab.total_size ({vocab['total_size']}) != the vocab of models.teacher.base {base!r} "
                        f"({size}) + vocab.ext_size ({vocab['ext_size']}) = {size + vocab['ext_size']}")
    per_step = train["per_device_batch_size"] * train["processes"]
    if train["batch_size"] % per_step:
        problems.append(f"train.batch_size ({train['batch_size']}) must be a multiple of "
                        f"train.per_device_batch_size ({train['per_device_batch_size']}) x train.processes "
                        f"({train['processes']}) = {per_step}")
    if train["gpus"] and train["processes"] > train["gpus"]:
        problems.append(f"train.processes ({train['processes']}) > train.gpus ({train['gpus']}): "
                        "one process per GPU")
    if config["mirror"] or os.environ.get("EDAD_MIRROR"):
        try:
            mirror_root(config["mirror"])
        except DownloadError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("config: " + "; ".join(problems))
