"""edad_core: the logic behind the EDAD workflow (see DESIGN in README.md)."""

from edad_core.modeling import (  # noqa: F401  (import registers the Auto classes)
    ExBertConfig,
    ExBertForPreTraining,
    ExBertForTokenClassification,
    ExBertModel,
)

__version__ = "0.1.0"
