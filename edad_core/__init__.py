"""edad_core: the logic behind the EDAD workflow (method, numbers and decisions: docs/design.md).

`import edad_core.modeling` registers model_type exbert with transformers' Auto classes. The package itself imports
no torch (the model classes below load on first use), so that `edad predict --onnx` runs without it.
"""

__version__ = "0.1.0"
_MODEL_CLASSES = ("ExBertConfig", "ExBertForPreTraining", "ExBertForTokenClassification", "ExBertModel")


def __getattr__(name):
    if name in _MODEL_CLASSES:
        from edad_core import modeling

        return getattr(modeling, name)
    raise AttributeError(f"module 'edad_core' has no attribute {name!r}")
