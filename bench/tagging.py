"""Tagging speed from raw text (issues 22 and 23), the measurement rule export_ner makes for each tagger
(edad_core.tagging_speed), here for any folders side by side: `edad predict`'s path on PyTorch fp32, ONNX fp32 and
ONNX int8, against transformers' token-classification pipeline on the same model and sentences, for the student
and the teacher, interleaved (A B C D A B C D ...), at --threads threads and batch 32. Per row: sentences/s and
characters/s (median of the rounds, with min-max), the size on disk of the weights, and, with --test, each
backend's test entity F1 (the test split tagged as raw text, seqeval as the model was evaluated).

    python bench/tagging.py --student results/mini/export/EDAD_linear-BC5CDR-IOB \\
        --teacher results/mini/export/exBERT-BC5CDR-IOB --test results/mini/ner/BC5CDR-IOB/test.tsv
    python bench/tagging.py --stand-in mini           # untrained models of the mini profile's shapes (speed only)

Timed text: --text files, else the first --documents of the mirror's CRAFT articles
(../shared/mirror/.../CRAFT/.../articles/txt/*.txt). Each ONNX file is written into the folder by
edad_core.onnx_export if missing (a stand-in folder is made under --work). Prints one JSON line per row, the
table, and a summary line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

import harness
from edad_core.export import raw_test_text
from edad_core.hub import export_for_hub
from edad_core.modeling import ExBertConfig, ExBertForTokenClassification
from edad_core.ner_data import read_iob
from edad_core.onnx_export import FILES, export_onnx
from edad_core.tagger import TAGGER_KEY
from edad_core.tagging_speed import measure_folders, speed_frame, speed_note
from edad_core.textio import read_txt

CRAFT = "raw.githubusercontent.com/UCDenver-ccp/CRAFT/2abe82b8bb8089448b84937d5f61d8c218011322/articles/txt"
LABELS = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]


def stand_in(role: str, config: dict, folder: Path) -> Path:
    """A tagger folder with the profile's shapes (random weights: speed only): the student, or the exBERT teacher
    (made once under `folder`)."""
    out = folder / role
    if (out / "config.json").is_file():
        return out
    base = harness.base_model("mini", config, folder / "base")
    shape = harness.teacher_shape("mini", config).to_dict()
    models, ext = config["models"], config["vocab"]["ext_size"]
    sizes = models["student"] if role == "student" else {**models["teacher"], **{
        k: shape[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")}}
    tokenizer = harness.extended_tokenizer(base, ext, folder / f"{role}-tokenizer")
    torch.manual_seed(0)
    model = ExBertForTokenClassification(ExBertConfig(
        vocab_size=shape["vocab_size"], ext_vocab_size=ext, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)},
        **{k: v for k, v in sizes.items() if k != "base"}))
    raw = folder / f"{role}-raw"
    model.save_pretrained(raw)
    for f in Path(tokenizer).iterdir():
        shutil.copy(f, raw / f.name)
    export_for_hub(raw, out, extra_config={TAGGER_KEY: {"max_length": 128, "seqeval_mode": "strict",
                                                         "seqeval_scheme": "IOB2"}})
    return out


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--student", type=Path, help="an exported tagger folder (rule export_ner)")
    p.add_argument("--teacher", type=Path, help="an exported tagger folder of the teacher, same dataset")
    p.add_argument("--stand-in", choices=["mini"], help="untrained models of the profile's shapes instead")
    p.add_argument("--test", type=Path, help="the dataset's test.tsv: report each backend's test entity F1 (the "
                   "split tagged as raw text, edad_core.export.raw_test_text)")
    p.add_argument("--text", type=Path, nargs="*", help=".txt files to time (default: the mirror's CRAFT articles)")
    p.add_argument("--documents", type=int, default=20, help="CRAFT articles to time (default 20)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path("work/bench_tagging"))
    args = harness.parse(p)
    folders = {}
    if args.stand_in:
        config = harness.profile_config(args.stand_in)
        folders = {role: stand_in(role, config, args.work) for role in ("student", "teacher")}
    folders.update({r: f for r, f in (("student", args.student), ("teacher", args.teacher)) if f})
    files = args.text or sorted((harness.PROJECT.parent / "shared" / "mirror" / CRAFT).glob("*.txt"))[: args.documents]
    docs = [read_txt(f) for f in files]
    for folder in folders.values():
        if not (folder / FILES["int8"]).is_file():
            export_onnx(folder)
    test = None
    if args.test:
        gold = read_iob(args.test)
        test = (raw_test_text([w for w, _ in gold])[0], [t for _, t in gold])
    rows = measure_folders(folders, docs, threads=args.threads, batch_size=32, rounds=args.rounds, test=test)
    for row in rows:
        harness.emit(row)
    print(speed_frame(rows).to_markdown(index=False))
    harness.summary_line("tagging", speed_note(rows, f"{len(docs)} files ({files[0].parent})"))


if __name__ == "__main__":
    main()
