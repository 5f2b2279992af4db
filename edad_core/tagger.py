"""Tag raw text with an exported NER model: entities with character offsets (`edad predict`, edad_core.cli).

    tagger = Tagger.from_pretrained("results/export/EDAD_linear-BC5CDR-IOB")          # PyTorch
    tagger = Tagger.from_pretrained(folder, onnx="model.int8.onnx")                  # onnxruntime, no torch
    tagger("Cisplatin induced nephrotoxicity.")   # [{start, end, text, label, score}, ...]
    for doc in tagger.tag(documents): ...          # documents: {"id", "text"} -> + "entities", "sentences"

The path from text to entities is the evaluation's (edad_core.ner), so a sentence gets the labels it got there:
- sentences: edad_core.corpus.sentence_spans on every line (a line is a paragraph), offsets kept;
- words: runs of letters/digits and single other characters, exactly how the three benchmarks are tokenised
  ("56-year-old" -> 56 - year - old), so the model sees its training tokenisation;
- a sentence longer than the fine-tuning window (`edad_tagger.max_length` in config.json) is cut into windows,
  each word predicted in the window where it has the most context (edad_core.windows);
- batches sorted by length; the label of a word is its first piece's argmax, its score that label's
  probability; an entity's score is the mean over its words (as transformers' pipeline computes it);
- entities are decoded from the word tags as the model was evaluated (`edad_tagger.seqeval_mode`, by seqeval):
  strict IOB2 drops an I-X that follows no B-X/I-X, `conlleval` (seqeval's default, and transformers' pipeline)
  starts an entity there.

No torch import unless the PyTorch backend is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB1, IOB2, IOBES, Entities

from edad_core.corpus import sentence_spans
from edad_core.windows import encode, encode_cut, owned_positions, padded_batches

WORD = re.compile(r"[^\W_]+|[^\w\s]|_")  # the benchmarks' tokenisation (checked on all nine files)
LINE = re.compile(r"[^\n\r]+")
WHITESPACE = re.compile(r"\s")
SCHEMES = {"IOB1": IOB1, "IOB2": IOB2, "IOBES": IOBES}
TAGGER_KEY = "edad_tagger"  # config.json: max_length, seqeval_mode, seqeval_scheme of the fine-tuning


def sentences_of(text: str) -> list[tuple[int, int]]:
    """[start, end) of every sentence of `text`; each line is a paragraph, never joined to the next."""
    spans = []
    for line in LINE.finditer(text):
        # any whitespace as a plain space (same length), as the corpus splitter saw its collapsed lines
        spans += [(line.start() + s, line.start() + e)
                  for s, e in sentence_spans(WHITESPACE.sub(" ", line.group()))]
    return spans


def words_of(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) of every word of text[start:end], in text's offsets."""
    return [m.span() for m in WORD.finditer(text, start, end)]


class OnnxBackend:
    """Logits from an ONNX file with onnxruntime (edad_core.onnx_export writes it)."""

    def __init__(self, path, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


class TorchBackend:
    """Logits from the PyTorch model (the folder's own code, edad_core.modeling)."""

    def __init__(self, folder, device: str, threads: int | None):
        import torch

        from edad_core.modeling import ExBertForTokenClassification

        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch, self.device = torch, device
        self.model = ExBertForTokenClassification.from_pretrained(folder).to(device).eval()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.from_numpy(ids).to(self.device),
                             attention_mask=self.torch.from_numpy(mask).to(self.device))
        return out.logits.float().cpu().numpy()


class Tagger:
    def __init__(self, folder, *, onnx: str | None = None, device: str = "auto", batch_size: int = 32,
                 threads: int | None = None, seqeval_mode: str | None = "from_config",
                 max_sentences: int = 2048, settings: dict | None = None):
        import transformers  # its tokenizers need no torch

        self.folder = Path(folder)
        config = json.loads((self.folder / "config.json").read_text())
        settings = settings or config.get(TAGGER_KEY)
        if settings is None or "id2label" not in config:
            raise ValueError(f"{self.folder}/config.json: no {TAGGER_KEY!r} or 'id2label': not a tagger export "
                             "(make one with rule export_ner, edad_core.export)")
        self.labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        self.max_length = settings["max_length"]
        self.mode = settings["seqeval_mode"] if seqeval_mode == "from_config" else seqeval_mode
        self.scheme = settings["seqeval_scheme"]
        # finetune.protocol: "authors" evaluated one cut input per sentence, [CLS] and [SEP] hidden (edad_core.ner)
        self.authors = settings.get("protocol", "standard") == "authors"
        self.batch_size, self.max_sentences = batch_size, max_sentences
        # the class tokenizer_config.json names: AutoTokenizer would read config.json's auto_map and ask whether to
        # trust the remote code
        name = json.loads((self.folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
        self.tokenizer = getattr(transformers, name or "AutoTokenizer").from_pretrained(self.folder)
        if onnx:
            self.backend = OnnxBackend(self.folder / onnx if not Path(onnx).is_absolute() else onnx, threads)
        else:
            self.backend = TorchBackend(self.folder, device, threads)

    @classmethod
    def from_pretrained(cls, folder, **kwargs) -> "Tagger":
        return cls(folder, **kwargs)

    def __call__(self, text: str) -> list[dict]:
        return next(self.tag([{"id": "", "text": text}]))["entities"]

    def tag(self, documents: Iterable[dict]) -> Iterator[dict]:
        """Each document {"id", "text", ...} with "entities" [{start, end, text, label, score}], "sentences"
        (per sentence its words [start, end, tag], the tags IOB2 from the entities) and "word_labels" (per
        sentence the model's label of each word, before decoding), in the input order.
        Documents are tagged in groups of about `max_sentences` sentences, batches sorted by length."""
        group, count = [], 0
        for doc in documents:
            spans = [words_of(doc["text"], s, e) for s, e in sentences_of(doc["text"])]
            group.append((doc, spans))
            count += len(spans)
            if count >= self.max_sentences:
                yield from self._tag_group(group)
                group, count = [], 0
        if group:
            yield from self._tag_group(group)

    def word_labels(self, sentences: list[list[str]]) -> tuple[list[list[int]], list[list[float]]]:
        """Label id and its probability for every word of word-tokenised sentences."""
        outside = self.labels.index("O") if "O" in self.labels else 0  # a word past the authors' cut: O, as in ner
        labels = [[outside] * len(words) for words in sentences]
        probs = [[0.0] * len(words) for words in sentences]
        windows_ = (encode_cut if self.authors else encode)(self.tokenizer, sentences, self.max_length)
        for chunk, ids, mask in padded_batches(windows_, self.batch_size, self.tokenizer.pad_token_id, self.authors):
            rows, cols, words = owned_positions(chunk)
            logits = self.backend(ids, mask)[rows, cols].astype(np.float64)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            best = p.argmax(-1)
            for (s, w), label, prob in zip(words, best.tolist(), p[np.arange(len(best)), best].tolist()):
                labels[s][w], probs[s][w] = label, prob
        return labels, probs

    def entities(self, tags: list[str]) -> list[tuple[str, int, int]]:
        """(type, first word, last word + 1) of a sentence's tags, decoded as the model was evaluated."""
        if all(t == "O" for t in tags):  # most sentences of real text: skip seqeval's slower parse
            return []
        if self.mode is None:
            return [(t, s, e + 1) for t, s, e in get_entities(tags)]
        return [(e.tag, e.start, e.end) for e in Entities([tags], SCHEMES[self.scheme]).entities[0]]

    def _tag_group(self, group) -> Iterator[dict]:
        sentences = [[doc["text"][s:e] for s, e in spans] for doc, doc_spans in group for spans in doc_spans]
        it = iter(zip(*self.word_labels(sentences)))  # every sentence has a word: it is stripped and not empty
        for doc, doc_spans in group:
            text, entities, out_sentences, word_labels = doc["text"], [], [], []
            for spans in doc_spans:
                ids, p = next(it)
                found = self.entities([self.labels[i] for i in ids])
                tags = ["O"] * len(spans)
                for label, first, last in found:
                    start, end = spans[first][0], spans[last - 1][1]
                    entities.append({"start": start, "end": end, "text": text[start:end], "label": label,
                                     "score": float(np.mean(p[first:last]))})
                    tags[first:last] = [f"B-{label}"] + [f"I-{label}"] * (last - first - 1)
                out_sentences.append([[s, e, t] for (s, e), t in zip(spans, tags)])
                word_labels.append([self.labels[i] for i in ids])
            yield {**doc, "entities": entities, "sentences": out_sentences, "word_labels": word_labels}
