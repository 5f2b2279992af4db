"""ONNX exports (edad_core.onnx_export): fp32 logits equal PyTorch's within 1e-4 on 256 BC5CDR test sentences (every
exBERT part exported: both embedding tables, extension layers, gates), the int8 file runs, and `edad predict --onnx`
works in a process where importing torch fails."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import PROJECT

from edad_core.export import raw_test_text
from edad_core.modeling import ExBertForTokenClassification
from edad_core.ner_data import read_iob
from edad_core.onnx_export import export_onnx
from edad_core.tagger import Tagger
from edad_core.windows import encode, padded_batches

# `import torch` fails, as if it were not installed: find_spec says None (transformers then skips it)
NO_TORCH = """
import sys
from importlib.machinery import PathFinder

class NoTorch(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "torch" else PathFinder.find_spec(name, path, target)

sys.meta_path = [NoTorch if f is PathFinder else f for f in sys.meta_path]
"""


@pytest.fixture(scope="module")
def onnx_folder(tagger_run, tmp_path_factory):
    from edad_core.hub import export_for_hub
    from edad_core.tagger import TAGGER_KEY

    folder = tmp_path_factory.mktemp("onnx") / "tagger"
    settings = json.loads((tagger_run / "result.json").read_text())["settings"]
    export_for_hub(tagger_run / "model", folder, extra_config={TAGGER_KEY: {
        k: settings[k] for k in ("max_length", "seqeval_mode", "seqeval_scheme")}})
    paths = export_onnx(folder)
    assert set(paths) == {"fp32", "int8"} and all(p.stat().st_size for p in paths.values())
    return folder


def test_onnx_logits_equal_pytorch_on_256_sentences(onnx_folder, tagger_run):
    model = ExBertForTokenClassification.from_pretrained(onnx_folder).eval()
    assert model.config.ext_vocab_size and model.bert.encoder.layer[0].ext is not None  # extension and gates
    tagger = Tagger(onnx_folder, onnx="model.onnx")
    sentences = [w for w, _ in read_iob(tagger_run.parent / "data" / "test.tsv")][:256]
    windows = encode(tagger.tokenizer, sentences, tagger.max_length)
    assert any(i >= model.config.vocab_size for w in windows for i in w.input_ids)  # extension ids in the input
    worst, int8_worst = 0.0, 0.0
    int8 = ort.InferenceSession(str(onnx_folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    for _, ids, mask in padded_batches(windows, 32, tagger.tokenizer.pad_token_id):
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        got = tagger.backend(ids, mask)
        assert got.shape == ref.shape
        keep = mask.astype(bool)
        worst = max(worst, float(np.abs(got - ref)[keep].max()))
        q = int8.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        int8_worst = max(int8_worst, float(np.abs(q - ref)[keep].max()))
    assert worst < 1e-4, worst
    assert 0 < int8_worst < 1.0, int8_worst  # quantised: not identical, not far off


def test_predict_onnx_runs_where_torch_cannot_be_imported(onnx_folder, tagger_run, tmp_path):
    text = raw_test_text([w for w, _ in read_iob(tagger_run.parent / "data" / "test.tsv")][:100])[0]
    (tmp_path / "doc.txt").write_text(text)
    script = NO_TORCH + (
        "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('torch imported')\n"
        "from edad_core.cli import main\n"
        f"main(['predict', {str(onnx_folder)!r}, {str(tmp_path / 'doc.txt')!r}, '-o', {str(tmp_path / 'onnx.jsonl')!r},"
        " '--onnx', 'fp32', '-q'])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'torch'], 'torch was loaded'\n")
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (onnx_doc,) = [json.loads(line) for line in (tmp_path / "onnx.jsonl").read_text().splitlines()]
    (torch_doc,) = Tagger(onnx_folder, device="cpu").tag([{"id": "doc", "text": text}])
    assert [(e["start"], e["end"], e["label"]) for e in onnx_doc["entities"]] == [
        (e["start"], e["end"], e["label"]) for e in torch_doc["entities"]]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(onnx_doc["entities"], torch_doc["entities"])) < 1e-5
    shutil.rmtree(tmp_path)
