"""One BERT-family model that is plain BERT or exBERT by configuration (docs/design.md §1).

    model = ExBertForPreTraining.from_bert("bert-base-uncased", ext_vocab_size=17658, ext_hidden_size=384,
                                           ext_intermediate_size=1536, ext_num_attention_heads=6)
    model.freeze_original()   # exBERT trains only the extension
    out = model(input_ids, attention_mask, token_type_ids, labels=mlm_labels, output_hidden_states=True,
                output_attention_scores=[4, 8, 12])
    model.save_pretrained(folder); AutoModelForPreTraining.from_pretrained(folder)   # model_type "exbert"

exBERT = BERT plus an *extension*: an extension word-embedding table for domain WordPiece ids appended after
the original vocabulary, and in every layer a narrower extension layer beside the original one, mixed by a
per-token gate: ``g = sigmoid(Linear(d, 1)(h))``, ``y = g * orig(h) + (1 - g) * ext(h)``.

Parameter names of the original part are those of ``transformers.BertModel`` (``bert.embeddings...``,
``bert.encoder.layer.{i}.attention.self.query...``), so any plain BERT checkpoint loads into it unchanged.
The attention is our own code because TinyBERT distils the *pre-softmax* scores, which transformers'
eager path does not return (it returns probabilities) and sdpa returns nothing: scores are materialised
only for the layers asked for; every other layer runs through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForTokenClassification,
    BertConfig,
    BertForPreTraining,
    BertForTokenClassification,
    BertModel,
    PreTrainedModel,
)
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput


class ExBertConfig(BertConfig):
    """`BertConfig` plus the extension. ``vocab_size`` stays the original table's size; extension ids are
    ``vocab_size .. vocab_size + ext_vocab_size - 1``. ``ext_num_attention_heads = 0`` means no extension
    layers, ``ext_vocab_size = 0`` no extension vocabulary: both 0 is plain BERT."""

    model_type = "exbert"

    def __init__(
        self,
        ext_vocab_size: int = 0,
        ext_hidden_size: int = 0,
        ext_intermediate_size: int = 0,
        ext_num_attention_heads: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ext_vocab_size = ext_vocab_size
        self.ext_hidden_size = ext_hidden_size
        self.ext_intermediate_size = ext_intermediate_size
        self.ext_num_attention_heads = ext_num_attention_heads
        if ext_num_attention_heads:
            if ext_hidden_size % ext_num_attention_heads:
                raise ValueError(
                    f"ext_hidden_size ({ext_hidden_size}) is not a multiple of "
                    f"ext_num_attention_heads ({ext_num_attention_heads})"
                )
            if ext_intermediate_size <= 0:
                raise ValueError("ext_intermediate_size must be > 0 when extension layers are configured")

    @classmethod
    def from_bert_config(cls, bert_config: BertConfig, **overrides) -> "ExBertConfig":
        """The same architecture as a plain BERT config, plus (or with changed) `overrides`."""
        values = bert_config.to_dict()
        for key in ("model_type", "architectures", "transformers_version", "_name_or_path"):
            values.pop(key, None)
        return cls(**{**values, **overrides})

    @property
    def total_vocab_size(self) -> int:
        return self.vocab_size + self.ext_vocab_size

    @property
    def has_ext_layers(self) -> bool:
        return self.ext_num_attention_heads > 0

    @property
    def total_attention_heads(self) -> int:
        return self.num_attention_heads + self.ext_num_attention_heads


@dataclass
class ExBertModelOutput(ModelOutput):
    """``hidden_states``: (embedding output, layer 1, ..., layer N) when asked for.
    ``attention_scores``: {layer (1-based): [B, heads (original then extension), L, L]} pre-softmax scores
    (scaled QK^T plus the additive mask) for the layers asked for."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attention_scores: dict[int, torch.Tensor] | None = None


@dataclass
class ExBertForPreTrainingOutput(ModelOutput):
    """``mlm_logits`` covers all ``total_vocab_size`` ids. With ``labels`` it is computed only at the masked
    positions (``labels != -100``): [n_masked, V], paired with ``mlm_labels`` [n_masked]; else [B, L, V]."""

    mlm_logits: torch.Tensor | None = None
    mlm_labels: torch.Tensor | None = None
    nsp_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attention_scores: dict[int, torch.Tensor] | None = None


@dataclass
class ExBertTokenClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class ExBertEmbeddings(nn.Module):
    def __init__(self, config: ExBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.ext_word_embeddings = (
            nn.Embedding(config.ext_vocab_size, config.hidden_size) if config.ext_vocab_size else None
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        base_size = self.word_embeddings.num_embeddings
        if self.ext_word_embeddings is None:
            words = self.word_embeddings(input_ids)
        else:
            # docs/design.md decision 2: an id < base_size reads the original table, id >= base_size reads row
            # id - base_size of the extension table. Both lookups are cheap; where() keeps the gradient exact.
            is_ext = (input_ids >= base_size).unsqueeze(-1)
            words = torch.where(
                is_ext,
                self.ext_word_embeddings((input_ids - base_size).clamp(min=0)),
                self.word_embeddings(input_ids.clamp(max=base_size - 1)),
            )
        positions = self.position_embeddings.weight[: input_ids.shape[1]].unsqueeze(0)
        embeddings = words + self.token_type_embeddings(token_type_ids) + positions
        return self.dropout(self.LayerNorm(embeddings))


class SelfAttention(nn.Module):
    def __init__(self, hidden_size: int, inner_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_size = inner_size // num_heads
        self.query = nn.Linear(hidden_size, inner_size)
        self.key = nn.Linear(hidden_size, inner_size)
        self.value = nn.Linear(hidden_size, inner_size)
        self.dropout_p = dropout

    def forward(self, h: torch.Tensor, mask: "AttentionMask", want_scores: bool):
        batch, length, _ = h.shape
        q, k, v = (
            proj(h).view(batch, length, self.num_heads, self.head_size).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        dropout_p = self.dropout_p if self.training else 0.0
        if want_scores:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + mask.additive
            probs = F.dropout(scores.softmax(dim=-1), p=dropout_p, training=self.training)
            context = torch.matmul(probs.to(v.dtype), v)
        else:
            scores = None
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.keep, dropout_p=dropout_p)
        return context.transpose(1, 2).reshape(batch, length, -1), scores


class ResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual), as BertSelfOutput / BertOutput."""

    def __init__(self, in_size: int, hidden_size: int, eps: float, dropout: float):
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, config: ExBertConfig, inner_size: int, num_heads: int):
        super().__init__()
        self.self = SelfAttention(config.hidden_size, inner_size, num_heads, config.attention_probs_dropout_prob)
        self.output = ResidualOutput(inner_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob)

    def forward(self, h, mask, want_scores):
        context, scores = self.self(h, mask, want_scores)
        return self.output(context, h), scores


class Intermediate(nn.Module):
    def __init__(self, config: ExBertConfig, intermediate_size: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, intermediate_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, h):
        return self.act(self.dense(h))


class TransformerBlock(nn.Module):
    """A BERT layer whose attention inner width and FFN width are free: the original layer uses the model's
    own sizes, the extension layer the narrower ``ext_*`` sizes; both read and write the d-wide stream."""

    def __init__(self, config: ExBertConfig, inner_size: int, num_heads: int, intermediate_size: int):
        super().__init__()
        self.attention = Attention(config, inner_size, num_heads)
        self.intermediate = Intermediate(config, intermediate_size)
        self.output = ResidualOutput(
            intermediate_size, config.hidden_size, config.layer_norm_eps, config.hidden_dropout_prob
        )

    def forward(self, h, mask, want_scores):
        attended, scores = self.attention(h, mask, want_scores)
        return self.output(self.intermediate(attended), attended), scores


class ExBertLayer(TransformerBlock):
    """The original BERT layer (same parameter names as transformers' BertLayer) plus, when configured, the
    extension layer ``ext`` and the ``gate``."""

    def __init__(self, config: ExBertConfig):
        super().__init__(config, config.hidden_size, config.num_attention_heads, config.intermediate_size)
        if config.has_ext_layers:
            self.ext = TransformerBlock(
                config, config.ext_hidden_size, config.ext_num_attention_heads, config.ext_intermediate_size
            )
            self.gate = nn.Linear(config.hidden_size, 1)
        else:
            self.ext = None

    def forward(self, h, mask, want_scores):
        out, scores = super().forward(h, mask, want_scores)
        if self.ext is None:
            return out, scores
        ext_out, ext_scores = self.ext(h, mask, want_scores)
        g = torch.sigmoid(self.gate(h))
        out = g * out + (1 - g) * ext_out
        if want_scores:
            scores = torch.cat([scores, ext_scores], dim=1)  # original heads, then extension heads
        return out, scores


class AttentionMask:
    """The padding mask in both forms: additive [B,1,1,L] for explicit scores, boolean for sdpa."""

    def __init__(self, attention_mask: torch.Tensor, dtype: torch.dtype):
        self.keep = attention_mask.bool()[:, None, None, :]
        self.additive = (~self.keep).to(dtype) * torch.finfo(dtype).min


class ExBertPreTrainedModel(PreTrainedModel):
    config_class = ExBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = False
    # names (substrings) of the parameters that stay trainable under freeze_original(): the extension, the
    # gates, and the task heads of the subclass.
    _head_prefixes: tuple[str, ...] = ()
    # the transformers class whose checkpoint layout matches ours, for from_bert()
    _hf_bert_class: type[PreTrainedModel] = BertModel

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, MlmHead):
            module.bias.zero_()
            if module.ext_bias is not None:
                module.ext_bias.zero_()

    def is_extension_parameter(self, name: str) -> bool:
        return (
            "ext_word_embeddings" in name
            or ".ext." in name
            or ".gate." in name
            or name.startswith(self._head_prefixes)
        )

    def freeze_original(self) -> None:
        """Train only the extension embeddings, extension layers, gates and task heads (exBERT)."""
        for name, param in self.named_parameters():
            param.requires_grad_(self.is_extension_parameter(name))

    @classmethod
    def from_bert(cls, checkpoint: str, *, ext_vocab_size=0, ext_hidden_size=0, ext_intermediate_size=0,
                  ext_num_attention_heads=0, **config_overrides):
        """Load a plain BERT checkpoint (hub id or local folder) into the original part; the extension (and any
        head the checkpoint lacks) is freshly initialised."""
        bert = cls._hf_bert_class.from_pretrained(checkpoint, **config_overrides)
        config = ExBertConfig.from_bert_config(
            bert.config,
            ext_vocab_size=ext_vocab_size,
            ext_hidden_size=ext_hidden_size,
            ext_intermediate_size=ext_intermediate_size,
            ext_num_attention_heads=ext_num_attention_heads,
        )
        model = cls(config)
        # transformers ties the MLM decoder to the word embeddings; we read the embeddings directly.
        state = {k: v for k, v in bert.state_dict().items() if not k.startswith("cls.predictions.decoder.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"{checkpoint}: weights with no place in {cls.__name__}: {unexpected[:5]}")
        fresh = [k for k in missing if not model.is_extension_parameter(k)]
        if fresh:
            raise ValueError(f"{checkpoint}: original weights missing from the checkpoint: {fresh[:5]}")
        return model


class ExBertModel(ExBertPreTrainedModel):
    def __init__(self, config: ExBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = ExBertEmbeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(ExBertLayer(config) for _ in range(config.num_hidden_layers))
        if add_pooling_layer:
            self.pooler = nn.Module()
            self.pooler.dense = nn.Linear(config.hidden_size, config.hidden_size)
        else:
            self.pooler = None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attention_scores: Collection[int] = ()) -> ExBertModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        bad_layers = set(output_attention_scores) - set(range(1, self.config.num_hidden_layers + 1))
        if bad_layers:
            raise ValueError(f"output_attention_scores: no layer {sorted(bad_layers)} (layers are 1-based)")

        h = self.embeddings(input_ids, token_type_ids)
        mask = AttentionMask(attention_mask, h.dtype)
        hidden_states = [h] if output_hidden_states else None
        attention_scores = {}
        for index, layer in enumerate(self.encoder.layer, start=1):
            want_scores = index in output_attention_scores
            h, scores = layer(h, mask, want_scores)
            if want_scores:
                attention_scores[index] = scores
            if output_hidden_states:
                hidden_states.append(h)
        pooled = torch.tanh(self.pooler.dense(h[:, 0])) if self.pooler is not None else None
        return ExBertModelOutput(
            last_hidden_state=h,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attention_scores=attention_scores if output_attention_scores else None,
        )


class MlmHead(nn.Module):
    """BERT's MLM head over all ids: the decoders are the (original, extension) embedding tables themselves."""

    def __init__(self, config: ExBertConfig):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.act = ACT2FN[config.hidden_act]
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.ext_bias = nn.Parameter(torch.zeros(config.ext_vocab_size)) if config.ext_vocab_size else None

    def forward(self, h: torch.Tensor, embeddings: ExBertEmbeddings) -> torch.Tensor:
        t = self.transform
        h = t.LayerNorm(t.act(t.dense(h)))
        logits = F.linear(h, embeddings.word_embeddings.weight, self.bias)
        if self.ext_bias is None:
            return logits
        return torch.cat([logits, F.linear(h, embeddings.ext_word_embeddings.weight, self.ext_bias)], dim=-1)


class ExBertForPreTraining(ExBertPreTrainedModel):
    _head_prefixes = ("cls.",)
    _hf_bert_class = BertForPreTraining

    def __init__(self, config: ExBertConfig):
        super().__init__(config)
        self.bert = ExBertModel(config)
        self.cls = nn.Module()
        self.cls.predictions = MlmHead(config)
        self.cls.seq_relationship = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attention_scores: Collection[int] = (),
                ) -> ExBertForPreTrainingOutput:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        output_hidden_states=output_hidden_states, output_attention_scores=output_attention_scores)
        h = out.last_hidden_state
        mlm_labels = None
        if labels is not None:
            # a 48,180-way projection at every position would cost the small student more than its encoder
            masked = labels != -100
            h, mlm_labels = h[masked], labels[masked]
        return ExBertForPreTrainingOutput(
            mlm_logits=self.cls.predictions(h, self.bert.embeddings),
            mlm_labels=mlm_labels,
            nsp_logits=self.cls.seq_relationship(out.pooler_output),
            hidden_states=out.hidden_states,
            attention_scores=out.attention_scores,
        )


class ExBertForTokenClassification(ExBertPreTrainedModel):
    _head_prefixes = ("classifier.",)
    _hf_bert_class = BertForTokenClassification

    def __init__(self, config: ExBertConfig):
        super().__init__(config)
        self.bert = ExBertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> ExBertTokenClassifierOutput:
        """`labels` (batch, length; -100 = ignored) adds the token-level cross-entropy `loss`, as transformers'
        BertForTokenClassification does. No attention scores: those feed distillation, and a tagger is not
        distilled."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), labels.view(-1), ignore_index=-100)
        return ExBertTokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


AutoConfig.register("exbert", ExBertConfig)
AutoModel.register(ExBertConfig, ExBertModel)
AutoModelForPreTraining.register(ExBertConfig, ExBertForPreTraining)
AutoModelForTokenClassification.register(ExBertConfig, ExBertForTokenClassification)
