"""WordPiece vocabularies (docs/design.md, decision 5) written as tokenizer folders.

    build_base_vocab(base, out_dir)
    build_extended_vocab(corpus_files, base, out_dir, ext_size=17658, total_size=48180)   # exBERT
    build_extended_vocab_from_file("exBERT_vocab.txt", base, out_dir, total_size=48180)   # exBERT's own file
    build_domain_only_vocab(corpus_files, out_dir, size=31090)                            # oiSciBERT

Every vocabulary becomes a folder with `vocab.txt` (one token per line, id = line number - 1), the fast tokenizer
saved by `transformers.BertTokenizer.save_pretrained` (`tokenizer.json`, `tokenizer_config.json`; load it with
`AutoTokenizer.from_pretrained(folder)`) and `vocab_stats.json`. Three kinds:

- base: the teacher's own vocab, copied (so every model has a tokenizer folder);
- extended (exBERT): base vocab, then the first `ext_size` tokens of a domain WordPiece vocab (in the trainer's
  id order) that the base vocab lacks; or a whole extended vocab file as given (`vocab.extension_file`, e.g.
  exBERT's released 48,180-entry `exBERT_vocab.txt`), checked against the base vocab;
- domain (oiSciBERT): a domain-only WordPiece vocab trained from scratch.

The same corpus gives the same vocab.txt (same sha256) every time; see `train_wordpiece` for how.
"""

import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, BertTokenizer

from edad_core.download import fetch, resolve_model
from edad_core.files import atomic_dir, corpus_lines, sha256_file

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MODEL_MAX_LENGTH = 512  # BERT's position embeddings
MAX_TRAIN_ROUNDS = 4  # trainings of a growing domain vocab before giving up on ext_size new tokens
N_EXAMPLES = 30  # tokens listed in vocab_stats.json


def _sentence_batches(corpus_files, batch_size=10_000) -> Iterator[list[str]]:
    batch = []
    for path in corpus_files:
        for _, line in corpus_lines(path):
            if line.strip():
                batch.append(line)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def _train(corpus_files, vocab_size: int, special_tokens: list[str], lowercase: bool, min_frequency: int) -> list[str]:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)  # strips accents iff lowercase, as BERT
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens, show_progress=False
    )
    tokenizer.train_from_iterator(_sentence_batches(corpus_files), trainer)
    vocab = tokenizer.get_vocab()
    return sorted(vocab, key=vocab.get)


def train_wordpiece(corpus_files, vocab_size: int, *, lowercase: bool = True, min_frequency: int = 2) -> list[str]:
    """A WordPiece vocab learned on the non-empty lines of `corpus_files`, tokens in the trainer's id order (the
    specials, the alphabet, the `##` characters, then merges by decreasing count). It is shorter than `vocab_size`
    when no merge reaches `min_frequency` any more.

    tokenizers' WordPieceTrainer numbers the `##` characters in hash-map order, and breaks ties between merges of
    equal count by those numbers, so two trainings on one corpus differ (huggingface/tokenizers#1794; on the
    mirror's CRAFT articles, every run gave another vocab). A first pass with no merges finds the `##`
    characters; the second pass is given them, sorted, as special tokens, which fixes their numbers. Their block
    is then moved back behind the alphabet, where the trainer puts it."""
    probe = _train(corpus_files, 0, SPECIAL_TOKENS, lowercase, min_frequency)
    continuations = sorted(t for t in probe if t.startswith("##"))
    n_alphabet = len(probe) - len(SPECIAL_TOKENS) - len(continuations)
    tokens = _train(corpus_files, vocab_size, SPECIAL_TOKENS + continuations, lowercase, min_frequency)
    learned = tokens[len(SPECIAL_TOKENS) + len(continuations):]
    return SPECIAL_TOKENS + learned[:n_alphabet] + continuations + learned[n_alphabet:]


def load_base_vocab(base: str) -> list[str]:
    """The tokens of `base` (hub id, local folder or 'pkg:' spec) in id order: its vocab.txt, else its tokenizer."""
    resolved = resolve_model(base)
    vocab_file = Path(resolved) / "vocab.txt"
    where = f"base vocab {base!r} (models.teacher.base)"
    if vocab_file.is_file():
        where += f", {vocab_file}"
        tokens = vocab_file.read_text(encoding="utf-8").split("\n")
        tokens = tokens[:-1] if tokens[-1] == "" else tokens
    else:
        vocab = AutoTokenizer.from_pretrained(resolved).get_vocab()
        tokens = sorted(vocab, key=vocab.get)
        if [vocab[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError(f"{where}: token ids are not 0..{len(tokens) - 1} without gaps")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{where}: duplicate tokens")
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise ValueError(f"{where}: special tokens {missing} are missing")
    return tokens


def write_tokenizer_dir(out_dir, tokens: list[str], *, lowercase: bool, stats: dict) -> Path:
    """vocab.txt + BERT fast tokenizer + vocab_stats.json, written atomically to `out_dir`."""
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{out_dir}: the vocab has duplicate tokens")
    with atomic_dir(out_dir) as tmp:
        vocab_file = tmp / "vocab.txt"
        vocab_file.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
        tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=lowercase, model_max_length=MODEL_MAX_LENGTH)
        if len(tokenizer) != len(tokens):
            raise ValueError(f"{out_dir}: the tokenizer has {len(tokenizer)} tokens, the vocab {len(tokens)}")
        tokenizer.save_pretrained(tmp)
        stats = {**stats, "size": len(tokens), "lowercase": lowercase,
                 "vocab_sha256": sha256_file(vocab_file)}
        (tmp / "vocab_stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    log.info("wrote %s (%d tokens)", out_dir, len(tokens))
    return Path(out_dir)


def build_base_vocab(base: str, out_dir, *, lowercase: bool = True) -> Path:
    tokens = load_base_vocab(base)
    return write_tokenizer_dir(out_dir, tokens, lowercase=lowercase, stats={"kind": "base", "base": base})


def build_extended_vocab(
    corpus_files, base: str, out_dir, *, ext_size: int = 17658, total_size: int = 48180,
    lowercase: bool = True, min_frequency: int = 2,
) -> Path:
    """Base vocab, then the first `ext_size` domain tokens it lacks, in the trainer's order: `total_size` tokens."""
    base_tokens = load_base_vocab(base)
    if len(base_tokens) + ext_size != total_size:
        raise ValueError(
            f"vocab.ext_size ({ext_size}) + the {len(base_tokens)} tokens of {base!r} (models.teacher.base) = "
            f"{len(base_tokens) + ext_size}, but vocab.total_size is {total_size}"
        )
    known = set(base_tokens) | set(SPECIAL_TOKENS)
    # Domain vocabs grow by merges in a fixed order, so a bigger training extends a smaller one's token order:
    # start at the base size and grow until there are ext_size new tokens or the corpus has no merges left.
    size = len(base_tokens)
    for _ in range(MAX_TRAIN_ROUNDS):
        domain = train_wordpiece(corpus_files, size, lowercase=lowercase, min_frequency=min_frequency)
        new = [t for t in domain if t not in known]
        log.info("domain vocab of %d (asked %d): %d tokens not in the base vocab", len(domain), size, len(new))
        if len(new) >= ext_size or len(domain) < size:
            break
        size += 2 * (ext_size - len(new))
    if len(new) < ext_size:
        raise ValueError(
            f"the corpus {', '.join(map(str, corpus_files))} gave only {len(new)} WordPiece tokens that are not in "
            f"the base vocab {base!r} (domain vocab of {len(domain)} tokens, min_frequency {min_frequency}), but "
            f"vocab.ext_size is {ext_size}: use a bigger corpus, or a smaller vocab.ext_size and vocab.total_size"
        )
    dropped = [t for t in domain if t in known and t not in SPECIAL_TOKENS]
    stats = {
        "kind": "extended", "base": base, "base_size": len(base_tokens), "ext_size": ext_size,
        "domain_vocab_size": len(domain), "domain_new_tokens": len(new), "domain_dropped_overlap": len(dropped),
        "min_frequency": min_frequency, "corpus_files": [str(p) for p in corpus_files],
        "first_extension_tokens": new[:N_EXAMPLES], "last_extension_tokens": new[ext_size - N_EXAMPLES : ext_size],
        "dropped_examples": [t for t in dropped if len(t.removeprefix("##")) > 1][:N_EXAMPLES],
    }
    return write_tokenizer_dir(out_dir, base_tokens + new[:ext_size], lowercase=lowercase, stats=stats)


def read_extension_file(path, shown: str, base: str, base_tokens: list[str], total_size: int) -> list[str]:
    """The entries of a whole extended vocab file (one per line; id = line number - 1), checked: `total_size`
    entries, the base vocab's entries first and in order, no entry twice. `shown` names the file in errors.
    An empty line is an entry: exBERT's file has one at id 30,522, the placeholder of its extension table's
    padding row."""
    where = f"vocab.extension_file {shown}"
    try:
        tokens = Path(path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err})") from err
    tokens = tokens[:-1] if tokens[-1] == "" else tokens  # the last line's newline
    if len(tokens) != total_size:
        raise ValueError(f"{where}: {len(tokens)} entries (lines), but vocab.total_size is {total_size}")
    for line, (token, expected) in enumerate(zip(tokens, base_tokens), start=1):
        if token != expected:
            raise ValueError(f"{where}, line {line}: {token!r}, but entry {line} of the base vocab {base!r} "
                             f"(models.teacher.base) is {expected!r}: the file must begin with the base vocab's "
                             f"{len(base_tokens)} entries in order")
    first_line = {}
    for line, token in enumerate(tokens, start=1):
        if token in first_line:
            raise ValueError(f"{where}, line {line}: {token!r} repeats line {first_line[token]}")
        first_line[token] = line
    return tokens


def build_extended_vocab_from_file(
    extension_file: str, base: str, out_dir, *, total_size: int = 48180, lowercase: bool = True, mirror=None,
) -> Path:
    """The extended vocab as a file gives it (a path or URL, fetched through edad_core.download: mirror first),
    checked by `read_extension_file`."""
    base_tokens = load_base_vocab(base)
    with tempfile.TemporaryDirectory() as tmp:
        local = fetch(extension_file, Path(tmp) / "vocab.txt", mirror=mirror, progress=False)
        tokens = read_extension_file(local, extension_file, base, base_tokens, total_size)
        digest = sha256_file(local)
    new = tokens[len(base_tokens):]
    stats = {
        "kind": "extended", "base": base, "base_size": len(base_tokens), "ext_size": len(new),
        "extension_file": extension_file, "extension_file_sha256": digest,
        "first_extension_tokens": new[:N_EXAMPLES], "last_extension_tokens": new[-N_EXAMPLES:],
    }
    return write_tokenizer_dir(out_dir, tokens, lowercase=lowercase, stats=stats)


def build_domain_only_vocab(
    corpus_files, out_dir, *, size: int = 31090, lowercase: bool = True, min_frequency: int = 2
) -> Path:
    """oiSciBERT's vocab: `size` WordPiece tokens trained from scratch on the corpus (the paper's size, SciBERT's
    31,090, is inferred from its parameter count: docs/design.md, decision "oiSciBERT's vocab size")."""
    tokens = train_wordpiece(corpus_files, size, lowercase=lowercase, min_frequency=min_frequency)
    if len(tokens) < size:
        raise ValueError(
            f"the corpus {', '.join(map(str, corpus_files))} gave only {len(tokens)} WordPiece tokens with "
            f"min_frequency {min_frequency}, but vocab.domain_only_size is {size}: use a bigger corpus, or a smaller "
            "vocab.domain_only_size or vocab.min_frequency"
        )
    stats = {
        "kind": "domain", "min_frequency": min_frequency, "corpus_files": [str(p) for p in corpus_files],
        "first_tokens": tokens[:N_EXAMPLES], "last_tokens": tokens[-N_EXAMPLES:],
    }
    return write_tokenizer_dir(out_dir, tokens, lowercase=lowercase, stats=stats)
