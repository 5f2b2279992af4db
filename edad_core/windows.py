"""Model inputs of word-tokenised sentences: sub-word pieces per word, and windows for sentences longer than the
model's input (docs/design.md decision 7). No torch here: the ONNX tagger (edad_core.tagger) uses it too.

    wins = encode(tokenizer, [["Torsade", "de", "pointes"], ...], max_length=128)   # [Window]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """One model input: a sentence's words [start, end) and the words it owns (predicts)."""

    sentence: int
    input_ids: list[int]
    first_piece: list[int]  # position in input_ids of each word's first piece (words start .. end-1)
    start: int
    owned: range  # word indices this window predicts


def word_pieces(tokenizer, sentences: list[list[str]]) -> list[list[list[int]]]:
    """Piece ids per word per sentence (one fast-tokenizer call); a word without pieces becomes [UNK]."""
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    out = []
    for i, words in enumerate(sentences):
        pieces = [[] for _ in words]
        for piece, word in zip(encoded["input_ids"][i], encoded.word_ids(i)):
            pieces[word].append(piece)
        out.append([p or [tokenizer.unk_token_id] for p in pieces])
    return out


def windows(pieces: list[list[int]], budget: int) -> list[tuple[int, int]]:
    """Word spans [start, end) of at most `budget` pieces covering the sentence; the next starts where half of the
    previous one's pieces remain (a single word longer than the budget is a window of its own, cut)."""
    counts = [len(p) for p in pieces]
    spans, start, n = [], 0, len(pieces)
    while True:
        end, used = start, 0
        while end < n and (used + counts[end] <= budget or end == start):
            used += counts[end]
            end += 1
        spans.append((start, end))
        if end == n:
            return spans
        nxt, rest = end, 0
        while nxt - 1 > start and rest + counts[nxt - 1] <= budget // 2:
            nxt -= 1
            rest += counts[nxt]
        start = nxt


def encode(tokenizer, sentences: list[list[str]], max_length: int) -> list[Window]:
    """The windows of every sentence, with each word owned by the window where it has the most context."""
    budget = max_length - 2
    result = []
    for s, pieces in enumerate(word_pieces(tokenizer, sentences)):
        spans = windows(pieces, budget)
        best = {}  # word -> (context, window index)
        built = []
        for k, (start, end) in enumerate(spans):
            ids, first = [tokenizer.cls_token_id], []
            for w in range(start, end):
                first.append(len(ids))
                ids.extend(pieces[w][: budget - len(ids) + 1])
            ids = ids[: budget + 1] + [tokenizer.sep_token_id]
            last = len(ids) - 2
            for w, pos in zip(range(start, end), first):
                context = min(pos - 1, last - pos)
                if w not in best or context > best[w][0]:
                    best[w] = (context, k)
            built.append((start, end, ids, first))
        for k, (start, end, ids, first) in enumerate(built):
            owned = [w for w in range(start, end) if best[w][1] == k]
            result.append(Window(s, ids, first, start, range(owned[0], owned[-1] + 1) if owned else range(0)))
    return result


def encode_cut(tokenizer, sentences: list[list[str]], max_length: int) -> list[Window]:
    """Finetuning_NER.py's inputs: one per sentence, [CLS] + its first max_length - 2 pieces + [SEP]; the window
    owns the words whose first piece is inside."""
    budget = max_length - 2
    result = []
    for s, pieces in enumerate(word_pieces(tokenizer, sentences)):
        ids, first = [tokenizer.cls_token_id], []
        for p in pieces:
            if len(ids) > budget:
                break
            first.append(len(ids))
            ids.extend(p)
        result.append(Window(s, ids[: budget + 1] + [tokenizer.sep_token_id], first, 0, range(len(first))))
    return result


def padded_batches(windows_: list[Window], batch_size: int, pad_id: int, hide_specials: bool = False
                   ) -> Iterator[tuple[list[Window], np.ndarray, np.ndarray]]:
    """Batches of windows, longest first (little padding), each padded to its longest: (windows, input_ids,
    attention_mask), int64 arrays [batch, length] (hide_specials: [CLS] and [SEP] masked too, the authors'
    protocol). The tagger and edad_core.ner.predict_windows (evaluation) both batch with it."""
    order = sorted(range(len(windows_)), key=lambda i: -len(windows_[i].input_ids))
    for b in range(0, len(order), batch_size):
        chunk = [windows_[i] for i in order[b : b + batch_size]]
        ids = np.full((len(chunk), len(chunk[0].input_ids)), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, win in enumerate(chunk):
            ids[row, : len(win.input_ids)] = win.input_ids
            mask[row, : len(win.input_ids)] = 1
            if hide_specials:
                mask[row, [0, len(win.input_ids) - 1]] = 0
        yield chunk, ids, mask


def owned_positions(chunk: list[Window]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(rows, columns, [(sentence, word)]): where in a batch's outputs each owned word's first piece is."""
    rows, cols, words = [], [], []
    for row, win in enumerate(chunk):
        for w in win.owned:
            rows.append(row)
            cols.append(win.first_piece[w - win.start])
            words.append((win.sentence, w))
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), words
