"""Cross-key config checks (edad_core.config_checks): each mistake is named at planning time."""

import copy
from pathlib import Path

import pytest
import yaml

from edad_core.config_checks import ConfigError, check_config

PROJECT = Path(__file__).resolve().parents[1]


def mini() -> dict:
    """config.yaml with config/mini.yaml over it (a shallow-enough merge for the keys checked here)."""
    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    for key, value in yaml.safe_load((PROJECT / "config" / "mini.yaml").read_text()).items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    config["mirror"] = str(PROJECT.parent / "shared" / "mirror")
    return config


def test_the_shipped_profiles_pass(minilm):
    check_config(mini())
    paper = yaml.safe_load((PROJECT / "config.yaml").read_text())
    check_config(paper)  # bert-base-uncased is a hub id: its vocab size is checked when the vocab rule runs


@pytest.mark.parametrize("change, message", [
    (lambda c: c["vocab"].update(total_size=48000), r"vocab\.total_size \(48000\) != the vocab of models\.teacher"
                                                    r"\.base .* \(30522\) \+ vocab\.ext_size \(17658\) = 48180"),
    (lambda c: c["vocab"].update(ext_size=50000), r"vocab\.ext_size \(50000\) must be smaller"),
    (lambda c: c["train"].update(batch_size=24), r"train\.batch_size \(24\) must be a multiple of "
                                                 r"train\.per_device_batch_size \(16\) x train\.processes \(1\)"),
    (lambda c: c["train"].update(processes=4, gpus=2), r"train\.processes \(4\) > train\.gpus \(2\)"),
    (lambda c: c.update(mirror="/no/such/mirror"), r"mirror folder /no/such/mirror does not exist"),
])
def test_mistakes_name_their_keys(minilm, change, message):
    config = copy.deepcopy(mini())
    change(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)
