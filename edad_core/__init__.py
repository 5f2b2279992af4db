"""edad_core: the logic behind the EDAD workflow (method, numbers and decisions: docs/design.md)."""

from edad_core.modeling import (  # noqa: F401  (import registers the Auto classes)
    ExBertConfig,
    ExBertForPreTraining,
    ExBertForTokenClassification,
    ExBertModel,
)

__version__ = "0.1.0"
