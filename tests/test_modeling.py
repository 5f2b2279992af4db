"""ExBERT model family: checked against transformers.BertModel and against hand recomputation."""

import math

import pytest
import torch
from transformers import AutoModel, AutoModelForPreTraining, AutoModelForTokenClassification, BertConfig, BertModel

import edad_core.modeling  # noqa: F401  (registers the Auto classes)
from edad_core.modeling import (
    ExBertConfig,
    ExBertForPreTraining,
    ExBertForTokenClassification,
    ExBertModel,
)

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TINY_EXT = dict(ext_vocab_size=20, ext_hidden_size=12, ext_intermediate_size=16, ext_num_attention_heads=4)


def batch(vocab: int, seed: int = 0, batch_size: int = 3, length: int = 10):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch_size, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


def assert_matches_bert(ours: ExBertModel, ref: BertModel, vocab: int):
    ids, mask, types = batch(vocab)
    with torch.no_grad():
        mine = ours(ids, mask, types, output_hidden_states=True)
        mine_scored = ours(ids, mask, types, output_hidden_states=True,
                           output_attention_scores=range(1, ours.config.num_hidden_layers + 1))
        theirs = ref(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    assert len(mine.hidden_states) == len(theirs.hidden_states) == ours.config.num_hidden_layers + 1
    for a, s, b in zip(mine.hidden_states, mine_scored.hidden_states, theirs.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # sdpa path
        torch.testing.assert_close(s, b, atol=1e-5, rtol=0)  # explicit-scores path
    torch.testing.assert_close(mine.pooler_output, theirs.pooler_output, atol=1e-5, rtol=0)


def test_no_extension_equals_bert_on_random_weights():
    torch.manual_seed(0)
    ref = BertModel(BertConfig(**TINY, attn_implementation="eager")).eval()
    ours = ExBertModel(ExBertConfig(**TINY)).eval()
    ours.load_state_dict(ref.state_dict())
    assert_matches_bert(ours, ref, TINY["vocab_size"])


def test_no_extension_equals_bert_on_minilm(minilm):
    ref = BertModel.from_pretrained(minilm, attn_implementation="eager").eval()
    ours = ExBertModel.from_bert(str(minilm)).eval()
    assert_matches_bert(ours, ref, 30522)


def test_from_bert_loads_original_part_and_fresh_extension(minilm):
    model = ExBertForPreTraining.from_bert(str(minilm), ext_vocab_size=50, ext_hidden_size=36,
                                           ext_intermediate_size=128, ext_num_attention_heads=12)
    ref = BertModel.from_pretrained(minilm)
    ours = model.bert.state_dict()
    for name, tensor in ref.state_dict().items():
        assert torch.equal(ours[name], tensor), name
    assert model.config.total_vocab_size == 30572
    assert model.bert.embeddings.ext_word_embeddings.weight.std() > 0


def build_paper_models():
    """Paper sizes on the meta device: shapes only, no memory."""
    ext = dict(ext_vocab_size=17658, ext_num_attention_heads=12)
    teacher_cfg = ExBertConfig(ext_hidden_size=252, ext_intermediate_size=1024, **ext)  # BertConfig defaults = bert-base
    student_cfg = ExBertConfig(num_hidden_layers=4, hidden_size=312, intermediate_size=1200, num_attention_heads=12,
                               ext_hidden_size=108, ext_intermediate_size=400, **ext)
    with torch.device("meta"):
        return ExBertForPreTraining(teacher_cfg), ExBertForPreTraining(student_cfg)


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_sizes_parameter_counts_and_mlm_classes():
    teacher, student = build_paper_models()
    assert 151e6 <= n_parameters(teacher) <= 153e6, n_parameters(teacher)
    assert 21e6 <= n_parameters(student) <= 23e6, n_parameters(student)
    ids = torch.zeros(2, 8, dtype=torch.long, device="meta")
    for model in (teacher, student):
        out = model(ids, output_attention_scores=[1])
        assert out.mlm_logits.shape == (2, 8, 48180)
        assert out.attention_scores[1].shape == (2, 24, 8, 8)  # 12 original + 12 extension heads
    bert_base = ExBertConfig()
    with torch.device("meta"):
        plain = ExBertModel(bert_base)
    assert 109e6 <= n_parameters(plain) <= 110e6


def test_freeze_original_step_changes_only_extension():
    torch.manual_seed(0)
    model = ExBertForPreTraining(ExBertConfig(**TINY, **TINY_EXT))
    model.freeze_original()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("ext" in n or ".gate." in n or n.startswith("cls.")) for n in trainable)
    assert "bert.embeddings.word_embeddings.weight" not in trainable
    assert "bert.encoder.layer.0.attention.self.query.weight" not in trainable
    assert "bert.encoder.layer.2.ext.output.dense.weight" in trainable
    # every extension id appears, so every extension embedding row gets a gradient
    ids = torch.cat([torch.arange(100, 120), torch.arange(1, 21)]).view(2, 20)
    labels = ids.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    out = model(ids, labels=labels)
    loss = torch.nn.functional.cross_entropy(out.mlm_logits, out.mlm_labels) + out.nsp_logits.sum()
    loss.backward()
    opt.step()
    for name, param in model.named_parameters():
        if name in trainable:
            assert not torch.equal(param, before[name]), f"{name} did not move"
        else:
            assert torch.equal(param, before[name]), f"{name} changed"


def test_attention_scores_match_independent_recomputation():
    torch.manual_seed(1)
    config = ExBertConfig(**TINY, **TINY_EXT)
    model = ExBertModel(config).eval()
    ids, mask, types = batch(config.total_vocab_size, seed=3)
    with torch.no_grad():
        out = model(ids, mask, types, output_hidden_states=True, output_attention_scores=[2, 3])
    assert set(out.attention_scores) == {2, 3}
    for index in (2, 3):
        h = out.hidden_states[index - 1]
        layer = model.encoder.layer[index - 1]
        expected = []
        for attn, heads in ((layer.attention.self, 4), (layer.ext.attention.self, 4)):
            q = h @ attn.query.weight.T + attn.query.bias
            k = h @ attn.key.weight.T + attn.key.bias
            width = q.shape[-1] // heads
            for head in range(heads):
                sl = slice(head * width, (head + 1) * width)
                s = torch.einsum("bid,bjd->bij", q[..., sl], k[..., sl]) / math.sqrt(width)
                s = s + (1 - mask[:, None, :].float()) * torch.finfo(torch.float32).min
                expected.append(s)
        torch.testing.assert_close(out.attention_scores[index], torch.stack(expected, dim=1), atol=1e-5, rtol=1e-5)
    # masked key positions carry the large negative value TinyBERT's loss zeroes (<= -100)
    assert (out.attention_scores[2][2, :, :, 3:] <= -100).all()


@pytest.mark.parametrize("gate_bias, path", [(50.0, "original"), (-50.0, "extension")])
def test_gate_selects_original_or_extension(gate_bias, path):
    torch.manual_seed(2)
    config = ExBertConfig(**TINY, **TINY_EXT)
    model = ExBertModel(config).eval()
    ids, mask, types = batch(TINY["vocab_size"], seed=4)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.gate.weight.zero_()
            layer.gate.bias.fill_(gate_bias)
        out = model(ids, mask, types, output_hidden_states=True)
        h = out.hidden_states[0]
        for index, layer in enumerate(model.encoder.layer, start=1):
            block = layer.ext if path == "extension" else super(type(layer), layer)
            expected, _ = block.forward(h, _mask(mask), False)
            torch.testing.assert_close(out.hidden_states[index], expected, atol=1e-5, rtol=0)
            h = expected
    if path == "original":  # with the gate fully open on the original side, the model is plain BERT
        ref = BertModel(BertConfig(**TINY, attn_implementation="eager")).eval()
        ref.load_state_dict({k: v for k, v in model.state_dict().items() if "ext" not in k and "gate" not in k})
        with torch.no_grad():
            torch.testing.assert_close(out.last_hidden_state,
                                       ref(ids, attention_mask=mask, token_type_ids=types).last_hidden_state,
                                       atol=1e-5, rtol=0)


def _mask(attention_mask):
    from edad_core.modeling import AttentionMask
    return AttentionMask(attention_mask, torch.float32)


def test_embedding_routing():
    torch.manual_seed(3)
    config = ExBertConfig(**TINY, **TINY_EXT)
    emb = ExBertModel(config).embeddings.eval()
    ids = torch.tensor([[0, 5, 99, 100, 119, 7]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1]])
    rows = torch.stack([emb.word_embeddings.weight[0], emb.word_embeddings.weight[5], emb.word_embeddings.weight[99],
                        emb.ext_word_embeddings.weight[0], emb.ext_word_embeddings.weight[19],
                        emb.word_embeddings.weight[7]])
    raw = rows + emb.position_embeddings.weight[:6] + emb.token_type_embeddings.weight[types[0]]
    expected = torch.nn.functional.layer_norm(raw, (32,), emb.LayerNorm.weight, emb.LayerNorm.bias, 1e-12)
    torch.testing.assert_close(emb(ids, types)[0], expected)


def test_mlm_logits_only_at_masked_positions():
    torch.manual_seed(4)
    model = ExBertForPreTraining(ExBertConfig(**TINY, **TINY_EXT)).eval()
    ids, mask, types = batch(120, seed=5)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 4], labels[2, 1] = 110, 7, 3
    with torch.no_grad():
        full = model(ids, mask, types)
        sparse = model(ids, mask, types, labels=labels)
    assert sparse.mlm_logits.shape == (3, 120)
    assert sparse.mlm_labels.tolist() == [110, 7, 3]
    torch.testing.assert_close(sparse.mlm_logits, full.mlm_logits[labels != -100])
    torch.testing.assert_close(sparse.nsp_logits, full.nsp_logits)


def test_unknown_score_layers_are_rejected():
    model = ExBertModel(ExBertConfig(**TINY, **TINY_EXT))
    with pytest.raises(ValueError, match="no layer"):
        model(torch.tensor([[1, 2]]), output_attention_scores=[0])


@pytest.mark.parametrize("cls", [ExBertModel, ExBertForPreTraining, ExBertForTokenClassification])
def test_unknown_keyword_raises_type_error(cls):
    # a typo such as `label=` must not be swallowed and silently return no loss
    model = cls(ExBertConfig(**TINY, **TINY_EXT))
    with pytest.raises(TypeError, match="label"):
        model(input_ids=torch.tensor([[1, 2]]), label=torch.tensor([[0, 1]]))


def test_save_load_round_trip_and_auto_classes(tmp_path):
    torch.manual_seed(5)
    model = ExBertForPreTraining(ExBertConfig(**TINY, **TINY_EXT)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    ids, mask, types = batch(120, seed=6)
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ExBertForPreTraining)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, ExBertModel)
    with torch.no_grad():
        a = model(ids, mask, types, output_hidden_states=True)
        b = loaded(ids, mask, types, output_hidden_states=True)
        c = base(ids, mask, types)
    torch.testing.assert_close(a.mlm_logits, b.mlm_logits, atol=0, rtol=0)
    torch.testing.assert_close(a.hidden_states[-1], c.last_hidden_state, atol=0, rtol=0)
    tagger = AutoModelForTokenClassification.from_pretrained(tmp_path, num_labels=5)
    assert isinstance(tagger, ExBertForTokenClassification)
    assert torch.equal(tagger.bert.encoder.layer[1].ext.intermediate.dense.weight,
                       model.bert.encoder.layer[1].ext.intermediate.dense.weight)
    assert tagger(ids, mask, types).logits.shape == (3, 10, 5)
