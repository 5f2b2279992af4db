"""The `edad` command (console script of the package): tag text with an exported model, check or upload an export,
export it to ONNX.

    edad predict MODEL_DIR notes/ abstracts.jsonl -o entities.jsonl [--format conll|pubtator] [--onnx int8]
    edad push MODEL_DIR user/repo --dry-run
    edad export-onnx MODEL_DIR

Imports are made inside the commands: `edad predict --onnx` never imports torch.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("edad")

ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}  # edad_core.onnx_export writes them


def predict(args) -> None:
    from tqdm import tqdm

    from edad_core.tagger import Tagger
    from edad_core.textio import FORMATS, input_files, read_documents, write_documents

    fmt = args.format or {".conll": "conll", ".pubtator": "pubtator"}.get(Path(args.output).suffix, "jsonl")
    if fmt not in FORMATS:
        raise SystemExit(f"--format: {fmt!r} is not one of {FORMATS}")
    files = input_files(args.inputs)  # missing inputs fail before the model loads
    onnx = ONNX_FILES.get(args.onnx, args.onnx) if args.onnx else None
    mode = {"as-trained": "from_config", "strict": "strict", "conlleval": None}[args.entities]
    tagger = Tagger.from_pretrained(args.model, onnx=onnx, device=args.device, batch_size=args.batch_size,
                                    threads=args.threads, seqeval_mode=mode)
    tagged = tqdm(tagger.tag(read_documents([f for f, _ in files])), unit="doc", desc="documents",
                  disable=args.quiet)
    n = write_documents(tagged, args.output, fmt)
    log.info("%d documents -> %s (%s)", n, args.output, fmt)


def loader_problems(folder: Path) -> list[str]:
    """What transformers would miss to load the folder with trust_remote_code: the auto_map targets (module file
    and class), the tokenizer, id2label."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return [f"{config_path}: missing"]
    config = json.loads(config_path.read_text())
    problems = []
    auto_map = config.get("auto_map") or {}
    if "AutoModelForTokenClassification" not in auto_map:
        problems.append("config.json: no auto_map entry AutoModelForTokenClassification")
    for auto, target in auto_map.items():
        module, _, cls = target.rpartition(".")
        source = folder / f"{module}.py"
        if not source.is_file():
            problems.append(f"auto_map {auto}: {source.name} missing")
        elif cls not in {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.ClassDef)}:
            problems.append(f"auto_map {auto}: no class {cls} in {source.name}")
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        problems.append("tokenizer: neither tokenizer.json nor vocab.txt")
    if not (folder / "tokenizer_config.json").is_file():
        problems.append("tokenizer: tokenizer_config.json missing")
    id2label = config.get("id2label") or {}
    if not id2label or sorted(map(int, id2label)) != list(range(len(id2label))):
        problems.append("config.json: id2label missing or not numbered 0..n-1")
    if not list(folder.glob("*.safetensors")):
        problems.append("weights: no *.safetensors file")
    return problems


def push(args) -> None:
    folder = Path(args.model)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    for p in files:
        print(f"{p.stat().st_size:>12,}  {p.relative_to(folder)}")
    print(f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB -> {args.repo}")
    problems = loader_problems(folder)
    if problems:
        raise SystemExit(f"{folder}: not uploadable:\n  " + "\n  ".join(problems))
    if args.dry_run:
        print("dry run: nothing uploaded")
        return
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(args.repo, exist_ok=True, private=args.private)
    api.upload_folder(repo_id=args.repo, folder_path=folder, ignore_patterns=[".*"])


def export_onnx(args) -> None:
    from edad_core.onnx_export import export_onnx as export

    for name, path in export(args.model, int8=not args.no_int8).items():
        print(f"{name}: {path}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="edad", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="tag .txt files/folders, JSONL ({id, text}) or PubTator documents")
    pr.add_argument("model", help="an exported tagger folder (rule export_ner)")
    pr.add_argument("inputs", nargs="+", help=".txt files or folders of them, .jsonl, .pubtator")
    pr.add_argument("-o", "--output", required=True, help="output file (written when complete)")
    pr.add_argument("--format", help="jsonl (default), conll or pubtator; default from the output's suffix")
    pr.add_argument("--onnx", help="run with onnxruntime: fp32, int8 or an .onnx file in MODEL_DIR (no torch)")
    pr.add_argument("--device", default="auto", help="PyTorch device: auto (GPU if present), cpu, cuda, cuda:1")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--threads", type=int, help="CPU threads (default: the library's)")
    pr.add_argument("--entities", choices=["as-trained", "strict", "conlleval"], default="as-trained",
                    help="how tags become entities: as the model was evaluated (default), strict IOB2 (an I-X "
                         "without B-X is dropped) or conlleval (it starts an entity, as transformers' pipeline)")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(run=predict)
    pu = sub.add_parser("push", help="upload an exported folder to the Hugging Face Hub")
    pu.add_argument("model")
    pu.add_argument("repo", help="user/name on the Hub")
    pu.add_argument("--dry-run", action="store_true", help="list what would be uploaded and check it; upload nothing")
    pu.add_argument("--private", action="store_true")
    pu.set_defaults(run=push)
    ex = sub.add_parser("export-onnx", help="write model.onnx (and model.int8.onnx) into an exported folder")
    ex.add_argument("model")
    ex.add_argument("--no-int8", action="store_true", help="only the fp32 model")
    ex.set_defaults(run=export_onnx)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from edad_core.textio import InputError

    try:
        args.run(args)
    except InputError as e:
        raise SystemExit(f"edad {args.command}: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
