"""A trained model for people who never install edad_core: the folder plus the model code, loadable with
transformers alone.

    export_for_hub("results/train/edad_linear/student", "results/export/EDAD")
    # elsewhere: AutoModel.from_pretrained("results/export/EDAD", trust_remote_code=True)

The code written beside the weights is edad_core/modeling.py split in two, as transformers' remote code expects:
`configuration_exbert.py` (ExBertConfig) and `modeling_exbert.py` (the rest, importing the config from the first),
with config.json's `auto_map` naming the classes. (transformers' register_for_auto_class would copy modeling.py
whole under its own name, config class included.) The Auto registrations at the end of modeling.py are left out:
`auto_map` replaces them. The code must not import edad_core; that is checked here.
"""

from __future__ import annotations

import ast
import inspect
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from edad_core import modeling
from edad_core.files import atomic_dir

CONFIG_MODULE, MODEL_MODULE = "configuration_exbert", "modeling_exbert"
AUTO_MAP = {
    "AutoConfig": f"{CONFIG_MODULE}.ExBertConfig",
    "AutoModel": f"{MODEL_MODULE}.ExBertModel",
    "AutoModelForPreTraining": f"{MODEL_MODULE}.ExBertForPreTraining",
    "AutoModelForTokenClassification": f"{MODEL_MODULE}.ExBertForTokenClassification",
}
README = """# {name}

Made by the EDAD workflow (Seo & Hwang, 2023: *EDAD: Efficient Domain Adaptive Distillation*). The model code
(`{config}.py`, `{model}.py`) is saved beside the weights, so transformers alone loads it:

```python
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained("{name}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{name}")
```

`AutoModelForTokenClassification` (a fresh classifier, to fine-tune) and `AutoModelForPreTraining` work the same way.
"""


def split_modeling_source() -> tuple[str, str]:
    """(configuration_exbert.py, modeling_exbert.py) source text from edad_core/modeling.py."""
    source = inspect.getsource(modeling)
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "edad_core" or (
            isinstance(node, ast.Import) and any(a.name.split(".")[0] == "edad_core" for a in node.names)
        ):
            raise ValueError(f"edad_core/modeling.py line {node.lineno} imports edad_core: the exported code would "
                             "not load without the package")
    config_node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ExBertConfig")
    start = min([config_node.lineno, *(d.lineno for d in config_node.decorator_list)]) - 1
    config_source = "".join(lines[start : config_node.end_lineno])
    registrations = {  # module-level Auto*.register(...) calls
        n.lineno for n in tree.body
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Attribute) and n.value.func.attr == "register"
    }
    model_lines = [line for i, line in enumerate(lines, 1) if i not in registrations]
    model_lines[start : config_node.end_lineno] = [f"from .{CONFIG_MODULE} import ExBertConfig\n"]
    header = '"""ExBertConfig of the EDAD workflow (edad_core/modeling.py), for transformers\' remote code."""\n\n'
    return header + "from transformers import BertConfig\n\n\n" + config_source, "".join(model_lines).rstrip() + "\n"


def export_for_hub(model_dir, out_dir, *, extra_config: dict | None = None,
                   finish: Callable[[Path], dict[str, str]] | None = None) -> Path:
    """Copy a saved model folder (config.json, weights, tokenizer files) to `out_dir` with the model code, the
    `auto_map` (and `extra_config`) in config.json and a generic README; then `finish(folder)`, if given, works on
    the complete folder (it may add files, e.g. ONNX exports) and returns more files ({name: text}; a README.md
    replaces the generic one). The whole folder appears at once, after `finish`."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != modeling.ExBertConfig.model_type:
        raise ValueError(f"{model_dir}/config.json: model_type {config.get('model_type')!r}, expected 'exbert'")
    config_code, model_code = split_modeling_source()
    with atomic_dir(out_dir) as tmp:
        for f in model_dir.iterdir():
            if f.is_file() and f.name != "config.json":
                shutil.copy2(f, tmp / f.name)
        config = {**config, **(extra_config or {}), "auto_map": AUTO_MAP}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / f"{CONFIG_MODULE}.py").write_text(config_code)
        (tmp / f"{MODEL_MODULE}.py").write_text(model_code)
        (tmp / "README.md").write_text(README.format(name=Path(out_dir).name, config=CONFIG_MODULE, model=MODEL_MODULE))
        for name, text in (finish(tmp) if finish else {}).items():
            (tmp / name).write_text(text)
    return Path(out_dir)
