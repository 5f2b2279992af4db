"""ONNX exports of a tagger folder (`edad export-onnx`, extra `.[onnx]`): `model.onnx` (fp32) and `model.int8.onnx`
(onnxruntime's dynamic int8 quantisation of the linear layers), beside the tokenizer, for `edad predict --onnx`.

    export_onnx("results/export/EDAD_linear-BC5CDR-IOB")   # {"fp32": .../model.onnx, "int8": .../model.int8.onnx}

torch.onnx's TorchScript exporter traces the whole model: both embedding tables with the id routing, the extension
layers and their gates (optimum's exporter does not support transformers 5). Inputs `input_ids` and
`attention_mask` (int64, [batch, sequence]), output `logits` ([batch, sequence, labels]); batch and sequence are
dynamic axes. Each file is written under a temp name and renamed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from edad_core.files import atomic_files
from edad_core.modeling import ExBertForTokenClassification

log = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
OPSET = 17


class LogitsOnly(torch.nn.Module):
    """The token classifier with tensors in and out (the exporter cannot return a ModelOutput)."""

    def __init__(self, model: ExBertForTokenClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(folder, *, int8: bool = True) -> dict[str, Path]:
    folder = Path(folder)
    model = ExBertForTokenClassification.from_pretrained(folder).eval()
    ids = torch.full((2, 9), model.config.pad_token_id or 0, dtype=torch.long)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # padded example: the mask path is traced
    out = {"fp32": folder / FILES["fp32"]}
    with atomic_files(out["fp32"]) as (tmp,), torch.no_grad():
        torch.onnx.export(LogitsOnly(model), (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "logits": {0: "batch", 1: "sequence"}})
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out["int8"] = folder / FILES["int8"]
        with atomic_files(out["int8"]) as (tmp,):
            quantize_dynamic(out["fp32"], tmp, weight_type=QuantType.QInt8)
    for name, path in out.items():
        log.info("%s: %s (%.1f MB)", name, path, os.path.getsize(path) / 1e6)
    return out
