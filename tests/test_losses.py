"""Losses against hand computations: explicit loops over layers, heads and elements in float64 numpy."""

import math

import numpy as np
import pytest
import torch

from edad_core.losses import (
    TinyBertLoss,
    _zero_masked,
    distilled_teacher_layers,
    edad_student_loss,
    layer_map,
    mlm_nsp_loss,
)

B, L, D_S, D_T = 2, 3, 4, 5


def test_layer_map():
    assert layer_map(4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_map(3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert layer_map(6, 6) == [(m, m) for m in range(1, 7)]
    assert distilled_teacher_layers(4, 12) == [3, 6, 9, 12]
    assert distilled_teacher_layers(3, 6) == [2, 4, 6]
    for student, teacher in ((5, 12), (0, 12), (8, 4)):
        with pytest.raises(ValueError, match="multiple of student layers"):
            layer_map(student, teacher)


def _models(heads_s=24, heads_t=24, student_layers=2, teacher_layers=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s_hidden = tuple(torch.randn(B, L, D_S, generator=g) for _ in range(student_layers + 1))
    t_hidden = tuple(torch.randn(B, L, D_T, generator=g) for _ in range(teacher_layers + 1))
    s_scores = {m: 3 * torch.randn(B, heads_s, L, L, generator=g) for m in range(1, student_layers + 1)}
    t_layers = distilled_teacher_layers(student_layers, teacher_layers)
    t_scores = {t: 3 * torch.randn(B, heads_t, L, L, generator=g) for t in t_layers}
    return s_hidden, s_scores, t_hidden, t_scores


def _mask_entries(s_scores, t_scores):
    """Real padding masks (last key of sample 1) plus boundary values at scattered entries."""
    for scores in (*s_scores.values(), *t_scores.values()):
        scores[1, :, :, L - 1] = torch.finfo(scores.dtype).min
    s1, t2 = s_scores[1], t_scores[2]
    s1[0, 0, 0, 0], t2[0, 0, 0, 0] = -100.0, 7.0        # exactly -100 -> 0
    s1[0, 5, 1, 2], t2[0, 5, 1, 2] = -99.9, -99.9       # just above -> kept (difference 0)
    s1[0, 6, 2, 1], t2[0, 6, 2, 1] = -99.9, 1.5         # kept on student side only
    s1[0, 23, 1, 1], t2[0, 23, 1, 1] = float("-inf"), 2.0
    s_scores[2][0, 13, 0, 1] = -1e4
    t_scores[4][0, 13, 0, 1] = -100.5


def _hand_linear(x, w, b):
    out = np.zeros(x.shape[:-1] + (w.shape[0],))
    for idx in np.ndindex(*x.shape[:-1]):
        for j in range(w.shape[0]):
            out[idx + (j,)] = sum(x[idx + (i,)] * w[j, i] for i in range(w.shape[1])) + b[j]
    return out


def _hand_mse(a, b):
    diffs = [(a[idx] - b[idx]) ** 2 for idx in np.ndindex(*a.shape)]
    return sum(diffs) / len(diffs)


def _hand_tiny(loss, s_hidden, s_scores, t_hidden, t_scores, pairs):
    w = loss.proj.weight.detach().double().numpy()
    b = loss.proj.bias.detach().double().numpy()
    np64 = lambda x: x.detach().double().numpy()  # noqa: E731
    emb = _hand_mse(_hand_linear(np64(s_hidden[0]), w, b), np64(t_hidden[0]))
    hidden = sum(_hand_mse(_hand_linear(np64(s_hidden[m]), w, b), np64(t_hidden[t])) for m, t in pairs)
    zero = lambda v: 0.0 if v <= -100 else v  # noqa: E731
    attn = 0.0
    for m, t in pairs:
        s, te = np64(s_scores[m]), np64(t_scores[t])
        per_head = []
        for h in range(s.shape[1]):
            sq = [(zero(s[bb, h, q, k]) - zero(te[bb, h, q, k])) ** 2
                  for bb in range(s.shape[0]) for q in range(L) for k in range(L)]
            per_head.append(sum(sq) / len(sq))
        attn += sum(per_head) / len(per_head)
    return {"emb": emb, "hidden": hidden, "attn": attn, "tiny": emb + hidden + attn}


def _tiny_loss(student_layers=2, teacher_layers=4):
    torch.manual_seed(0)
    loss = TinyBertLoss(D_S, D_T, student_layers, teacher_layers)
    with torch.no_grad():
        loss.proj.bias.uniform_(-1, 1)  # non-zero so the hand computation checks the bias is used
    return loss


@pytest.mark.parametrize("student_layers,teacher_layers", [(2, 4), (3, 6)])
def test_components_match_hand_computation(student_layers, teacher_layers):
    loss = _tiny_loss(student_layers, teacher_layers)
    inputs = _models(student_layers=student_layers, teacher_layers=teacher_layers)
    _mask_entries(inputs[1], inputs[3])
    got = loss(*inputs)
    want = _hand_tiny(loss, *inputs, layer_map(student_layers, teacher_layers))
    for key in ("emb", "hidden", "attn", "tiny"):
        assert got[key].dtype == torch.float32
        assert got[key].item() == pytest.approx(want[key], rel=1e-5), key
    assert math.isfinite(got["attn"].item())


def test_masking_boundary_changes_loss_as_expected():
    """Moving one student entry from -100 (zeroed) to -99.9 (kept) adds exactly (-99.9 - target)^2 / n."""
    loss = _tiny_loss()
    s_hidden, s_scores, t_hidden, t_scores = _models()
    t_scores[2][0, 0, 0, 0] = 2.0
    s_scores[1][0, 0, 0, 0] = -100.0
    at_100 = loss(s_hidden, s_scores, t_hidden, t_scores)["attn"].item()
    s_scores[1][0, 0, 0, 0] = -99.9
    at_999 = loss(s_hidden, s_scores, t_hidden, t_scores)["attn"].item()
    n = B * 24 * L * L
    assert at_999 - at_100 == pytest.approx(((-99.9 - 2.0) ** 2 - (0.0 - 2.0) ** 2) / n, rel=1e-4)


def test_masked_scores_are_zeroed_exactly_as_the_reference_does():
    """masked_fill gives the values of TinyBERT's torch.where(scores <= -100, zeros, scores), bit for bit."""
    scores = torch.tensor([-1e30, -100.0, -99.9, 0.0, -0.0, 3.5, float("nan"), float("-inf")])
    reference = torch.where(scores <= -100.0, torch.zeros_like(scores), scores)
    assert torch.equal(_zero_masked(scores).nan_to_num(7.0), reference.nan_to_num(7.0))


def test_projection_init_is_bert_like():
    loss = TinyBertLoss(312, 768, 4, 12)
    assert loss.proj.weight.shape == (768, 312)
    assert loss.proj.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(loss.proj.weight.mean().item()) < 1e-3
    assert torch.count_nonzero(loss.proj.bias) == 0


def test_one_projection_gets_gradient_from_embedding_and_hidden_terms():
    loss = _tiny_loss()
    assert [type(m) for m in loss.modules() if isinstance(m, torch.nn.Linear)] == [torch.nn.Linear]
    inputs = _models()
    s_hidden, _, t_hidden, _ = inputs
    w = loss.proj.weight.detach().double().numpy()
    b = loss.proj.bias.detach().double().numpy()

    def hand_grad_w(x, target):  # d mean((xW^T + b - target)^2) / dW
        x, target = x.double().numpy().reshape(-1, D_S), target.double().numpy().reshape(-1, D_T)
        grad = np.zeros_like(w)
        for r in range(x.shape[0]):
            for j in range(D_T):
                err = sum(x[r, i] * w[j, i] for i in range(D_S)) + b[j] - target[r, j]
                for i in range(D_S):
                    grad[j, i] += 2 * err * x[r, i] / (x.shape[0] * D_T)
        return grad

    grads = {}
    for key in ("emb", "hidden", "tiny"):
        loss.zero_grad()
        loss(*inputs)[key].backward()
        grads[key] = loss.proj.weight.grad.double().numpy().copy()
    np.testing.assert_allclose(grads["emb"], hand_grad_w(s_hidden[0], t_hidden[0]), rtol=1e-4, atol=1e-7)
    want_hidden = hand_grad_w(s_hidden[1], t_hidden[2]) + hand_grad_w(s_hidden[2], t_hidden[4])
    np.testing.assert_allclose(grads["hidden"], want_hidden, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grads["tiny"], grads["emb"] + grads["hidden"], rtol=1e-5, atol=1e-7)


def test_no_gradient_into_teacher_tensors():
    loss = _tiny_loss()
    s_hidden, s_scores, t_hidden, t_scores = _models()
    _mask_entries(s_scores, t_scores)
    for x in (*s_hidden, *s_scores.values(), *t_hidden, *t_scores.values()):
        x.requires_grad_(True)
    loss(s_hidden, s_scores, t_hidden, t_scores)["tiny"].backward()
    assert all(x.grad is None for x in (*t_hidden, *t_scores.values()))
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (*s_hidden, *s_scores.values()))
    # masked student entries (-inf, finfo.min, -100) get exactly zero gradient, never NaN
    assert all(torch.isfinite(x.grad).all() for x in s_scores.values())
    assert s_scores[1].grad[1, :, :, L - 1].abs().sum() == 0
    assert s_scores[1].grad[0, 23, 1, 1] == 0 and s_scores[1].grad[0, 0, 0, 0] == 0


def test_float32_under_bf16_autocast():
    loss = _tiny_loss()
    inputs = _models()
    _mask_entries(inputs[1], inputs[3])
    bf16 = (
        tuple(h.bfloat16() for h in inputs[0]), {k: v.bfloat16() for k, v in inputs[1].items()},
        tuple(h.bfloat16() for h in inputs[2]), {k: v.bfloat16() for k, v in inputs[3].items()},
    )
    for scores in (bf16[1], bf16[3]):  # the bf16 model's own mask value
        for v in scores.values():
            v[1, :, :, L - 1] = torch.finfo(torch.bfloat16).min
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(*bf16)
    # same numbers as plain float32 on the bf16-rounded values (a bf16 projection would differ at ~1e-3)
    as_float = (tuple(h.float() for h in bf16[0]), {k: v.float() for k, v in bf16[1].items()},
                tuple(h.float() for h in bf16[2]), {k: v.float() for k, v in bf16[3].items()})
    want = _hand_tiny(loss, *as_float, layer_map(2, 4))
    for key in ("emb", "hidden", "attn", "tiny"):
        assert got[key].dtype == torch.float32
        assert got[key].item() == pytest.approx(want[key], rel=1e-5), key


def test_wrong_head_count_names_layer_and_counts():
    loss = _tiny_loss()
    inputs = _models(heads_s=12, heads_t=24)
    with pytest.raises(ValueError, match=r"student layer 1 / teacher layer 2: student 12, teacher 24"):
        loss(*inputs)


def test_missing_layers_are_clear_errors():
    loss = _tiny_loss()
    s_hidden, s_scores, t_hidden, t_scores = _models()
    del t_scores[4]
    with pytest.raises(KeyError, match="student layer 2 / teacher layer 4"):
        loss(s_hidden, s_scores, t_hidden, t_scores)
    with pytest.raises(ValueError, match="expected 3 student and 5 teacher hidden states"):
        loss(s_hidden[:-1], s_scores, t_hidden, t_scores)


def _hand_ce(logits, labels):
    total = 0.0
    for row, y in zip(logits.double().numpy(), labels.numpy()):
        top = max(row)
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[y]
    return total / len(labels)


def test_mlm_nsp_loss():
    g = torch.Generator().manual_seed(1)
    mlm_logits = torch.randn(7, 11, generator=g).bfloat16()
    mlm_labels = torch.tensor([0, 3, 10, 5, 5, 2, 9])
    nsp_logits = torch.randn(4, 2, generator=g)
    nsp_labels = torch.tensor([0, 1, 1, 0])
    got = mlm_nsp_loss(mlm_logits, mlm_labels, nsp_logits, nsp_labels)
    assert got["mlm"].dtype == torch.float32
    assert got["mlm"].item() == pytest.approx(_hand_ce(mlm_logits.float(), mlm_labels), rel=1e-5)
    assert got["nsp"].item() == pytest.approx(_hand_ce(nsp_logits, nsp_labels), rel=1e-5)


def test_mlm_with_no_masked_positions_is_zero_with_grad_path():
    mlm_logits = torch.zeros(0, 11, requires_grad=True)
    nsp_logits = torch.randn(4, 2, requires_grad=True)
    got = mlm_nsp_loss(mlm_logits, torch.zeros(0, dtype=torch.long), nsp_logits, torch.tensor([0, 1, 1, 0]))
    assert got["mlm"].item() == 0.0
    (got["mlm"] + got["nsp"]).backward()
    assert mlm_logits.grad is not None and mlm_logits.grad.shape == (0, 11)
    assert nsp_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("alpha,want", [(0.0, 3.5), (0.5, 0.5 * 3.5 + 0.5 * 10.0), (1.0, 10.0)])
def test_edad_combination(alpha, want):
    mlm, nsp, tiny = (torch.tensor(v, requires_grad=True) for v in (2.0, 1.5, 10.0))
    got = edad_student_loss(alpha, mlm, nsp, tiny)
    assert got.item() == pytest.approx(want)
    got.backward()
    assert mlm.grad.item() == nsp.grad.item() == pytest.approx(1 - alpha)
    assert tiny.grad.item() == pytest.approx(alpha)


def test_edad_alpha_out_of_range():
    mlm, nsp, tiny = torch.tensor(2.3), torch.tensor(0.7), torch.tensor(9.1)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            edad_student_loss(alpha, mlm, nsp, tiny)
