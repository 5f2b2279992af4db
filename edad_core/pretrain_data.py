"""BERT sentence-pair pretraining examples (as Google's create_pretraining_data.py, but streamed), their
memory-mapped store, the dynamic-padding collator and the per-batch MLM masker.

    meta = create_examples("corpus.txt", tokenizer_dir, out_dir, max_seq_length=128, num_proc=4)
    dataset = PretrainingDataset(out_dir)                     # examples of out_dir, memory-mapped
    batch = pad_collate([dataset[i] for i in idx], meta["special_ids"]["pad"])
    masked_ids, labels = MlmMasker.from_tokenizer_dir(tokenizer_dir)(batch["input_ids"], generator)

Store (one folder per vocabulary):
  input_ids.bin          every example's ids back to back, [CLS] A [SEP] B [SEP]; uint16 if the vocab has at most
                         65,536 tokens, else uint32 (meta.json "dtype")
  offsets.npy            int64, n_examples + 1 entries: example i is input_ids[offsets[i]:offsets[i + 1]]
  segment_a_lengths.npy  uint16, tokens of type 0 per example ([CLS] A [SEP]); the rest is type 1
  nsp_labels.npy         uint8, 1 = B is a random span of another document, 0 = B continues A
  meta.json              sizes, dtype, special ids, settings, sha256 of the corpus

Streaming: the corpus (one sentence per line, blank line between documents) is cut into chunks of whole
documents (at least `chunk_sentences` sentences and 2 documents each; a 1-document tail joins the chunk
before it). Each chunk is tokenised and turned into examples on its own, with an RNG seeded by (seed, chunk
index): the output does not depend on num_proc, and at most 2 * num_proc + 1 chunks are in memory. A random next
segment comes from another document of the same chunk, where Google's script draws from the whole corpus: a
chunk of >= 10k sentences (dozens of articles, hundreds of abstracts) is a wide enough pool. One document must
fit in memory.
"""

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoTokenizer

from edad_core.files import atomic_dir, corpus_lines

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARRAY_FILES = ["input_ids.bin", "offsets.npy", "segment_a_lengths.npy", "nsp_labels.npy"]
_worker: dict = {}  # per process: the backend tokenizer and the settings (set by _init_worker)


def _document_chunks(corpus_txt, chunk_sentences: int, hasher):
    """Lists of documents (a document = list of sentences), whole documents per chunk, >= 2 documents each."""
    held, chunk, n_sentences, doc = None, [], 0, []
    for _, line in itertools.chain(corpus_lines(corpus_txt, hasher), [(0, "")]):  # "" closes the last document
        if line.strip():
            doc.append(line)
            continue
        if doc:
            chunk.append(doc)
            n_sentences += len(doc)
            doc = []
        if n_sentences >= chunk_sentences and len(chunk) >= 2:
            if held is not None:
                yield held
            held, chunk, n_sentences = chunk, [], 0
    if held is not None and len(chunk) < 2:
        held, chunk = held + chunk, []
    if held is None and len(chunk) < 2:
        raise ValueError(f"{corpus_txt}: {len(chunk)} document(s); next-sentence pairs need at least 2 "
                         "(documents are separated by a blank line)")
    yield from (c for c in (held, chunk) if c)


def _init_worker(tokenizer_dir, settings: dict, in_pool: bool):
    if in_pool:  # the pool already uses every core; tokenizers' own threads would oversubscribe
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    _worker.update(backend=backend, cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id, **settings)


def truncated_lengths(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Lengths left by Google's truncate_seq_pair, which drops one token at a time from the longer side (B on a
    tie) until len_a + len_b <= max_tokens."""
    excess = len_a + len_b - max_tokens
    if excess <= 0:
        return len_a, len_b
    if len_a > len_b:
        cut = min(excess, len_a - len_b)
        len_a -= cut
    else:
        cut = min(excess, len_b - len_a)
        len_b -= cut
    excess -= cut  # the sides are now equal (or done): B, A, B, ... in turn
    return len_a - excess // 2, len_b - (excess + 1) // 2


def _document_pairs(doc: int, bounds: list[np.ndarray], rng: np.random.Generator, w: dict) -> list[tuple]:
    """Google's create_instances_from_document on one document; segments are [lo, hi) ranges of the chunk's flat
    token array (a document's sentences are contiguous there). -> [(a_lo, a_hi, b_lo, b_hi, is_random_next)]"""
    starts = bounds[doc]  # sentence i of this document is flat[starts[i]:starts[i + 1]]
    n_sent = len(starts) - 1
    max_tokens = w["max_seq_length"] - 3
    target = max_tokens if rng.random() >= w["short_seq_prob"] else int(rng.integers(2, max_tokens + 1))
    pairs, first, i = [], 0, 0  # the current chunk of sentences is [first, i]
    while i < n_sent:
        if i == n_sent - 1 or starts[i + 1] - starts[first] >= target:
            n_chunk = i - first + 1
            a_end = first + (int(rng.integers(1, n_chunk)) if n_chunk >= 2 else 1)
            a_lo, a_hi = starts[first], starts[a_end]
            if n_chunk == 1 or rng.random() < w["random_next_prob"]:
                other = int(rng.integers(0, len(bounds) - 1))
                other += other >= doc  # uniform over the other documents of the chunk
                o_starts = bounds[other]
                j = int(rng.integers(0, len(o_starts) - 1))
                # whole sentences from j on until B reaches target - len(A) tokens (at least one sentence)
                stop = np.searchsorted(o_starts, o_starts[j] + max(target - (a_hi - a_lo), 1), side="left")
                b_lo, b_hi = o_starts[j], o_starts[min(stop, len(o_starts) - 1)]
                pairs.append((a_lo, a_hi, b_lo, b_hi, 1))
                i = a_end - 1  # the unused sentences start the next chunk
            else:
                pairs.append((a_lo, a_hi, starts[a_end], starts[i + 1], 0))
            first = i + 1
        i += 1
    return pairs


def _chunk_examples(task) -> dict:
    """Examples of one chunk of documents: flat ids with [CLS]/[SEP], per-example lengths, A lengths, NSP labels."""
    index, docs = task
    w = _worker
    encodings = w["backend"].encode_batch_fast([s for d in docs for s in d], add_special_tokens=False)
    sent_lens = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64,
                       count=int(sent_lens.sum()))
    ends = np.cumsum(sent_lens)
    # per document: sentence boundaries in `flat`, without the sentences that tokenise to nothing
    bounds, pos = [], 0
    for d in docs:
        doc_ends = ends[pos : pos + len(d)][sent_lens[pos : pos + len(d)] > 0]
        if len(doc_ends):
            bounds.append(np.concatenate([[ends[pos] - sent_lens[pos]], doc_ends]))
        pos += len(d)
    if len(bounds) < 2:
        raise ValueError(f"chunk {index}: fewer than 2 documents with text left after tokenisation")

    rng = np.random.default_rng([w["seed"], index])
    pairs = [p for _ in range(w["dupe_factor"]) for doc in range(len(bounds))
             for p in _document_pairs(doc, bounds, rng, w)]
    a_lo, a_hi, b_lo, b_hi, nsp = (np.array(c, dtype=np.int64) for c in zip(*pairs))
    len_a, len_b = a_hi - a_lo, b_hi - b_lo
    trunc = np.array([truncated_lengths(a, b, w["max_seq_length"] - 3) for a, b in zip(len_a, len_b)]).reshape(-1, 2)
    # Google removes each truncated token from the front or the back with probability 1/2
    a_lo += rng.binomial(len_a - trunc[:, 0], 0.5)
    b_lo += rng.binomial(len_b - trunc[:, 1], 0.5)
    len_a, len_b = trunc[:, 0], trunc[:, 1]

    lengths = len_a + len_b + 3
    starts = np.cumsum(lengths) - lengths
    out = np.empty(int(lengths.sum()), dtype=np.int64)
    out[starts] = w["cls"]
    out[starts + len_a + 1] = w["sep"]
    out[starts + lengths - 1] = w["sep"]
    for src_lo, dst_lo, n in ((a_lo, starts + 1, len_a), (b_lo, starts + len_a + 2, len_b)):
        dst = np.repeat(dst_lo - (np.cumsum(n) - n), n) + np.arange(n.sum())  # concatenated ranges
        out[dst] = flat[dst + np.repeat(src_lo - dst_lo, n)]
    return {"input_ids": out, "lengths": lengths, "segment_a_lengths": len_a + 2, "nsp_labels": nsp}


def _raw_to_npy(raw: Path, dtype, npy: Path, prepend_zero: bool = False):
    """A raw array file -> .npy, copied in blocks (bounded memory); `prepend_zero` turns lengths into offsets."""
    src = np.memmap(raw, dtype=dtype, mode="r") if raw.stat().st_size else np.zeros(0, dtype)
    dst = np.lib.format.open_memmap(npy, mode="w+", dtype=np.int64 if prepend_zero else dtype,
                                    shape=(len(src) + prepend_zero,))
    total, block = 0, 1 << 22
    if prepend_zero:
        dst[0] = 0
    for lo in range(0, len(src), block):
        part = src[lo : lo + block]
        if prepend_zero:
            dst[1 + lo : 1 + lo + len(part)] = total + np.cumsum(part, dtype=np.int64)
            total = int(dst[lo + len(part)])
        else:
            dst[lo : lo + len(part)] = part
    dst.flush()
    del src, dst
    raw.unlink()


def create_examples(
    corpus_txt, tokenizer_dir, out_dir, *, max_seq_length: int = 128, short_seq_prob: float = 0.1,
    random_next_prob: float = 0.5, dupe_factor: int = 1, seed: int = 12345, num_proc: int = 1,
    chunk_sentences: int = 10_000,
) -> dict:
    """Sentence-pair examples of `corpus_txt` tokenised with `tokenizer_dir`, stored in `out_dir` (see module
    docstring). Returns the meta.json content."""
    for key, value, ok in [
        ("max_seq_length", max_seq_length, 5 <= max_seq_length <= 65535),  # [CLS] A [SEP] B [SEP], uint16 lengths
        ("short_seq_prob", short_seq_prob, 0 <= short_seq_prob <= 1),
        ("random_next_prob", random_next_prob, 0 <= random_next_prob <= 1),
        ("dupe_factor", dupe_factor, dupe_factor >= 1),
        ("chunk_sentences", chunk_sentences, chunk_sentences >= 1),
        ("num_proc", num_proc, num_proc >= 1),
    ]:
        if not ok:
            raise ValueError(f"pretrain_data.{key}: {value!r} is out of range")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab_size = len(tokenizer)
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    settings = dict(max_seq_length=max_seq_length, short_seq_prob=short_seq_prob, random_next_prob=random_next_prob,
                    dupe_factor=dupe_factor, seed=seed, chunk_sentences=chunk_sentences)
    hasher = hashlib.sha256()
    n_docs = n_sentences = n_examples = n_tokens = n_random = n_unk = 0
    unk_id = tokenizer.unk_token_id
    with atomic_dir(out_dir) as tmp:
        raw = {name: open(tmp / f"{name}.raw", "wb") for name in ("lengths", "segment_a_lengths", "nsp_labels")}
        raw_dtypes = {"lengths": np.uint32, "segment_a_lengths": np.uint16, "nsp_labels": np.uint8}
        with open(tmp / "input_ids.bin", "wb") as ids_file:

            def write(result):
                nonlocal n_examples, n_tokens, n_random, n_unk
                result["input_ids"].astype(dtype).tofile(ids_file)
                for name, f in raw.items():
                    result[name].astype(raw_dtypes[name]).tofile(f)
                n_examples += len(result["lengths"])
                n_tokens += len(result["input_ids"])
                n_random += int(result["nsp_labels"].sum())
                n_unk += int(np.count_nonzero(result["input_ids"] == unk_id))

            chunks = _document_chunks(corpus_txt, chunk_sentences, hasher)
            args = (str(tokenizer_dir), settings)
            pool = multiprocessing.Pool(num_proc, _init_worker, (*args, True)) if num_proc > 1 else None
            if pool is None:
                _init_worker(*args, False)
            try:
                pending = deque()
                for task in enumerate(chunks):
                    n_docs += len(task[1])
                    n_sentences += sum(map(len, task[1]))
                    if pool is None:
                        write(_chunk_examples(task))
                        continue
                    pending.append(pool.apply_async(_chunk_examples, (task,)))
                    if len(pending) >= 2 * num_proc:  # bounded: the reader waits for the oldest chunk
                        write(pending.popleft().get())
                while pending:
                    write(pending.popleft().get())
            finally:
                if pool is not None:
                    pool.terminate()
        for f in raw.values():
            f.close()
        _raw_to_npy(tmp / "lengths.raw", np.uint32, tmp / "offsets.npy", prepend_zero=True)
        for name in ("segment_a_lengths", "nsp_labels"):
            _raw_to_npy(tmp / f"{name}.raw", raw_dtypes[name], tmp / f"{name}.npy")
        meta = {
            "format": FORMAT_VERSION, "n_examples": n_examples, "n_tokens": n_tokens, "vocab_size": vocab_size,
            "dtype": dtype.name, "random_next_fraction": n_random / max(n_examples, 1),
            # [UNK] among the word pieces (each example adds [CLS] and two [SEP]): how well the vocab covers the corpus
            "unk_fraction": n_unk / max(n_tokens - 3 * n_examples, 1),
            "special_ids": {k: getattr(tokenizer, f"{k}_token_id") for k in ("pad", "unk", "cls", "sep", "mask")},
            "settings": settings, "tokenizer_dir": str(tokenizer_dir),
            "corpus": {"path": str(corpus_txt), "sha256": hasher.hexdigest(), "documents": n_docs,
                       "sentences": n_sentences},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("%d examples, %d tokens from %d documents -> %s", n_examples, n_tokens, n_docs, out_dir)
    return meta


class PretrainingDataset(torch.utils.data.Dataset):
    """The examples of a `create_examples` folder, read through memory maps (opened lazily per process)."""

    def __init__(self, data_dir):
        self.dir = Path(data_dir)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        if self.meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.dir / 'meta.json'}: format {self.meta.get('format')}, expected {FORMAT_VERSION}")
        self._arrays = None

    def _open(self) -> dict:
        if self._arrays is None:
            arrays = {"input_ids": np.memmap(self.dir / "input_ids.bin", dtype=self.meta["dtype"], mode="r")}
            for name in ("offsets", "segment_a_lengths", "nsp_labels"):
                arrays[name] = np.load(self.dir / f"{name}.npy", mmap_mode="r")
            n = self.meta["n_examples"]
            if len(arrays["offsets"]) != n + 1 or arrays["offsets"][-1] != len(arrays["input_ids"]) or any(
                len(arrays[k]) != n for k in ("segment_a_lengths", "nsp_labels")
            ):
                raise ValueError(f"{self.dir}: array sizes disagree with meta.json ({n} examples)")
            self._arrays = arrays
        return self._arrays

    def __getstate__(self):  # worker processes re-open the memory maps instead of pickling them
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return self.meta["n_examples"]

    def __getitem__(self, i: int) -> dict:
        a = self._open()
        lo, hi = int(a["offsets"][i]), int(a["offsets"][i + 1])
        token_type_ids = torch.zeros(hi - lo, dtype=torch.long)
        token_type_ids[int(a["segment_a_lengths"][i]) :] = 1
        return {
            "input_ids": torch.from_numpy(a["input_ids"][lo:hi].astype(np.int64)),
            "token_type_ids": token_type_ids,
            "next_sentence_label": int(a["nsp_labels"][i]),
        }

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self._open()["offsets"])


def pad_collate(examples: list[dict], pad_token_id: int = 0, pad_to: int | None = None) -> dict:
    """Pad a list of PretrainingDataset items to the longest one of the batch, or to `pad_to` tokens (the reference
    code pads every example to max_seq_length; TinyBERT's terms average over the padded positions too)."""
    ids = [e["input_ids"] for e in examples]
    lengths = torch.tensor([len(x) for x in ids])
    width = int(lengths.max()) if pad_to is None else pad_to
    if width < lengths.max():
        raise ValueError(f"pad_collate: an example has {int(lengths.max())} tokens, more than pad_to = {pad_to}")

    def pad(sequences, value):
        return F.pad(pad_sequence(sequences, batch_first=True, padding_value=value),
                     (0, width - int(lengths.max())), value=value)

    return {
        "input_ids": pad(ids, pad_token_id),
        "attention_mask": (torch.arange(width) < lengths[:, None]).long(),
        "token_type_ids": pad([e["token_type_ids"] for e in examples], 0),
        "next_sentence_label": torch.tensor([e["next_sentence_label"] for e in examples], dtype=torch.long),
    }


class MlmMasker:
    """BERT's masking, drawn per batch: `mlm_probability` of the non-special, non-pad positions are chosen; of
    those 80% become [MASK], 10% a random id of the full vocab, 10% stay. Labels are the original ids at chosen
    positions, -100 elsewhere. All draws come from the caller's generator (checkpoint it for exact resume)."""

    def __init__(self, vocab_size: int, mask_token_id: int, special_token_ids, pad_token_id: int,
                 mlm_probability: float = 0.15):
        self.vocab_size = vocab_size
        self.mask_token_id = mask_token_id
        self.never = torch.tensor(sorted({*special_token_ids, pad_token_id}), dtype=torch.long)
        self.mlm_probability = mlm_probability

    @classmethod
    def from_tokenizer_dir(cls, tokenizer_dir, mlm_probability: float = 0.15) -> "MlmMasker":
        t = AutoTokenizer.from_pretrained(tokenizer_dir)
        return cls(len(t), t.mask_token_id, t.all_special_ids, t.pad_token_id, mlm_probability)

    def __call__(self, input_ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.to(generator.device)
        shape = ids.shape

        def coin(p):
            return torch.bernoulli(torch.full(shape, p, device=ids.device), generator=generator).bool()

        chosen = coin(self.mlm_probability) & ~torch.isin(ids, self.never.to(ids.device))
        masked = chosen & coin(0.8)
        randomised = chosen & ~masked & coin(0.5)
        random_ids = torch.randint(self.vocab_size, shape, generator=generator, device=ids.device)
        out = torch.where(masked, self.mask_token_id, ids)
        out = torch.where(randomised, random_ids, out)
        labels = torch.where(chosen, ids, -100)
        return out.to(input_ids.device), labels.to(input_ids.device)
