"""BertAdam and per-tensor clipping against hand computations in float64 numpy (pytorch-pretrained-bert's
update: no bias correction, weight decay added to the update), and the engine's weight-decay groups under it."""

import numpy as np
import pytest
import torch
from torch import nn

from edad_core.engine import make_optimizer, param_groups
from edad_core.optim import BertAdam, clip_grad_norm_per_tensor_

LR, EPS, WD, B1, B2 = 0.1, 1e-6, 0.01, 0.9, 0.999


def test_two_bert_adam_steps_equal_the_hand_update():
    g = torch.Generator().manual_seed(0)
    decayed = nn.Parameter(torch.randn(3, 4, generator=g))
    plain = nn.Parameter(torch.randn(4, generator=g))
    grads = [(torch.randn(3, 4, generator=g), 1e-3 * torch.randn(4, generator=g)) for _ in range(2)]
    grads[0][1][0] = 0.0  # a zero gradient: the update is 0 / (0 + eps)
    opt = BertAdam([{"params": [decayed], "weight_decay": WD}, {"params": [plain], "weight_decay": 0.0}], lr=LR,
                   eps=EPS)

    expected = []
    for p, wd, gs in ((decayed, WD, [gr[0] for gr in grads]), (plain, 0.0, [gr[1] for gr in grads])):
        x = p.detach().double().numpy().copy()
        m, v = np.zeros_like(x), np.zeros_like(x)
        for grad in gs:
            grad = grad.double().numpy()
            for i in np.ndindex(*x.shape):  # element by element, exactly the reference's formula
                m[i] = B1 * m[i] + (1 - B1) * grad[i]
                v[i] = B2 * v[i] + (1 - B2) * grad[i] ** 2
                x[i] = x[i] - LR * (m[i] / (np.sqrt(v[i]) + EPS) + wd * x[i])
        expected.append(x)

    for step_grads in grads:
        decayed.grad, plain.grad = (gr.clone() for gr in step_grads)
        opt.step()
    for p, x in zip((decayed, plain), expected):
        np.testing.assert_allclose(p.detach().double().numpy(), x, rtol=1e-5, atol=1e-6)


def test_the_first_bert_adam_step_is_not_bias_corrected():
    """Step 1 moves each coordinate by lr (1 - b1) / sqrt(1 - b2) = 3.16 lr; bias-corrected Adam by lr."""
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.5, -2.0])
    BertAdam([p], lr=1.0, eps=1e-12).step()
    torch.testing.assert_close(p.detach(), -torch.tensor([1.0, -1.0]) * 0.1 / 0.001 ** 0.5)
    q = nn.Parameter(torch.zeros(2))
    q.grad = torch.tensor([0.5, -2.0])
    torch.optim.AdamW([q], lr=1.0, weight_decay=0.0).step()
    torch.testing.assert_close(q.detach(), -torch.tensor([1.0, -1.0]), rtol=1e-6, atol=1e-6)  # Adam: lr x sign


@pytest.mark.parametrize("optimizer", ["bert_adam", "adamw"])
def test_weight_decay_spares_biases_and_layer_norms(optimizer):
    """Zero gradients: the only change is the decoupled decay, p -> p (1 - lr wd), on weights alone."""
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = make_optimizer(optimizer, param_groups(model, WD), LR, EPS)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        factor = 1 - LR * WD if name in ("0.weight", "2.weight") else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=1e-6, atol=0, msg=name)
    assert isinstance(opt, BertAdam if optimizer == "bert_adam" else torch.optim.AdamW)
    assert all(g["eps"] == EPS for g in opt.param_groups)


def test_per_tensor_clipping_equals_the_hand_computation():
    big, small, none = (nn.Parameter(torch.zeros(n)) for n in (3, 2, 1))
    big.grad, small.grad = torch.tensor([3.0, -4.0, 12.0]), torch.tensor([0.3, 0.4])  # norms 13 and 0.5
    clip_grad_norm_per_tensor_([big, small, none], 1.0)
    torch.testing.assert_close(big.grad, torch.tensor([3.0, -4.0, 12.0]) / (13 + 1e-6))  # torch's clip_coef
    torch.testing.assert_close(small.grad, torch.tensor([0.3, 0.4]))  # below the norm: untouched
    assert none.grad is None
    # one global norm would have scaled the small tensor too
    small.grad = torch.tensor([0.3, 0.4])
    torch.nn.utils.clip_grad_norm_([big, small], 1.0)
    assert small.grad.norm() < 0.5 * 0.99


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="BertAdam.*eps=0"):
        BertAdam([nn.Parameter(torch.zeros(1))], lr=1e-3, eps=0)


def test_bert_adam_equals_its_out_of_place_formula_bit_for_bit():
    """The step computes m / (sqrt(v) + eps) in one reused buffer: exactly the values of the plain expression."""
    g = torch.Generator().manual_seed(1)
    p = nn.Parameter(torch.randn(64, 33, generator=g))
    x, m, v = p.detach().clone(), torch.zeros(64, 33), torch.zeros(64, 33)
    opt = BertAdam([{"params": [p], "weight_decay": WD}], lr=LR, eps=EPS)
    for _ in range(3):
        grad = torch.randn(64, 33, generator=g) * 1e-3
        p.grad = grad.clone()
        opt.step()
        m = m.mul(B1).add(grad, alpha=1 - B1)
        v = v.mul(B2).addcmul(grad, grad, value=1 - B2)
        x = x.add((m / (v.sqrt() + EPS)).add(x, alpha=WD), alpha=-LR)  # the step before the buffer was reused
        assert torch.equal(p.detach(), x)
