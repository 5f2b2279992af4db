"""Cross-key config checks (edad_core.config_checks): each mistake is named at planning time."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from edad_core import config_checks, ner
from edad_core.config_checks import ConfigError, check_config
from edad_core.ner_data import SAFE_NAME

PROJECT = Path(__file__).resolve().parents[1]


def overlay(config: dict, changes: dict) -> dict:
    """`changes` merged into `config` key by key, as Snakemake merges a --configfile over another."""
    for key, value in changes.items():
        config[key] = overlay(config.get(key, {}), value) if isinstance(value, dict) else value
    return config


def mini() -> dict:
    """config.yaml with config/mini.yaml over it."""
    config = overlay(yaml.safe_load((PROJECT / "config.yaml").read_text()),
                     yaml.safe_load((PROJECT / "config" / "mini.yaml").read_text()))
    config["mirror"] = str(PROJECT.parent / "shared" / "mirror")
    return config


def test_the_shipped_profiles_pass(minilm):
    check_config(mini())
    paper = yaml.safe_load((PROJECT / "config.yaml").read_text())
    check_config(paper)  # bert-base-uncased is a hub id: its vocab size is checked when the vocab rule runs


def test_an_absent_mirror_is_no_mistake(minilm):
    config = mini()
    config["mirror"] = "/no/such/mirror"  # files then come from their URLs
    check_config(config)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["vocab"].update(total_size=48000), r"vocab\.total_size \(48000\) != the vocab of models\.teacher"
                                                    r"\.base .* \(30522\) \+ vocab\.ext_size \(17658\) = 48180"),
    (lambda c: c["vocab"].update(ext_size=50000), r"vocab\.ext_size \(50000\) must be smaller"),
    (lambda c: c["train"].update(batch_size=24), r"train\.batch_size \(24\) must be a multiple of "
                                                 r"train\.per_device_batch_size \(16\) x train\.processes \(1\)"),
    (lambda c: c["train"].update(processes=4, gpus=2), r"train\.processes \(4\) > train\.gpus \(2\)"),
    (lambda c: c["task_distill"].update(per_device_batch_size=24), r"task_distill\.batch_size \(32\) must be a "
                                                                   r"multiple of task_distill\.per_device_batch_size"),
    (lambda c: c["finetune"].update(models=["exBERT", "BioBert", "EDAD"]),
     r"finetune\.models: unknown row\(s\) \['BioBert', 'EDAD'\]; the configured rows are \['BERT', "),
])
def test_mistakes_name_their_keys(minilm, change, message):
    config = copy.deepcopy(mini())
    change(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


# ----------------------------------------------------------------------------- mistakes that used to fail late

LATE = [  # (config overlay, what the error must say): each passed `snakemake -n` and failed in its rule
    ({"models": {"student": {"hidden_size": 200}}},  # a RuntimeError at the first distillation step
     r"models\.student\.hidden_size \(200\) must be a multiple of models\.student\.num_attention_heads \(12\)"),
    ({"models": {"teacher": {"ext_hidden_size": 130}}},
     r"models\.teacher\.ext_hidden_size \(130\) must be a multiple of models\.teacher\.ext_num_attention_heads"),
    ({"vocab": {"domain_only_size": 1_000_000_000}},  # tokenizers aborted: out of memory, rc 134
     r"vocab\.domain_only_size \(1000000000\) must be between 1000 and 1,000,000"),
    ({"vocab": {"domain_only_size": 10}}, r"vocab\.domain_only_size \(10\) must be between"),
    ({"ner": {"splits": ["train", "test"]}},  # a FileNotFoundError in every fine-tuning job
     r"ner\.splits \(\['train', 'test'\]\) lacks \['devel'\]"),
    ({"finetune": {"batch_size": 24, "per_device_batch_size": 16}},  # named train.* by the engine
     r"finetune\.batch_size \(24\) must be a multiple of finetune\.per_device_batch_size \(16\)"),
    ({"report": {"edad_schedule": "cosine"}, "train": {"edad": {"schedules": ["linear"]}}},  # a MissingInputException
     r"report\.edad_schedule \('cosine'\) is not trained: add it to train\.edad\.schedules"),
    ({"ner": {"datasets": [".."]}}, r"ner\.datasets\[0\]: '\.\.' is not a safe name for a folder"),
    ({"ner": {"datasets": [{"name": "a b", "train": "t", "devel": "d", "test": "t"}]}},
     r"ner\.datasets\[0\]: 'a b' is not a safe name"),
]


@pytest.mark.parametrize("changes, message", LATE)
def test_mistakes_that_used_to_fail_late_name_their_key(minilm, tmp_path, changes, message):
    written = tmp_path / "mine.yaml"
    written.write_text(yaml.safe_dump(changes))
    config = overlay(copy.deepcopy(mini()), yaml.safe_load(written.read_text()))
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_snakemake_dry_run_stops_on_them_naming_each_key(tmp_path):
    together = [LATE[i] for i in (0, 1, 2, 4, 5, 6)]  # all in one file (the schema refuses unsafe names itself)
    combined = {}
    for changes, _ in together:
        overlay(combined, copy.deepcopy(changes))
    (tmp_path / "late.yaml").write_text(yaml.safe_dump(combined))
    env = {**os.environ, "EDAD_MIRROR": str(PROJECT.parent / "shared" / "mirror"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(PROJECT / "config" / "smoke.yaml"),
                          str(tmp_path / "late.yaml"), "-n"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    for _, message in together:
        assert re.search(message, out.stdout + out.stderr), (message, out.stderr[-2000:])


@pytest.mark.parametrize("item", ["..", {"name": ".", "train": "t", "devel": "d", "test": "t"}])
def test_the_schema_refuses_an_unsafe_dataset_name(minilm, item):
    config = overlay(copy.deepcopy(mini()), {"ner": {"datasets": [item]}})
    name = item["name"] if isinstance(item, dict) else item
    with pytest.raises(WorkflowError, match=re.escape(f"'{name}'")):  # the Snakefile's validate(), at `snakemake -n`
        validate(config, str(PROJECT / "config" / "schema.yaml"))


def test_the_schema_and_the_checks_agree_with_the_code():
    schema = yaml.safe_load((PROJECT / "config" / "schema.yaml").read_text())
    assert schema["$defs"]["safe_name"]["pattern"] == f"^{SAFE_NAME.pattern}$"  # the names the reader allows
    assert config_checks.SPLITS == ner.SPLITS  # the splits fine-tuning reads
