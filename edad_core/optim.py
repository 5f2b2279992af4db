"""BERT's optimizer and per-tensor gradient clipping, as BERT, exBERT, TinyBERT and the EDAD authors train
(pytorch-pretrained-bert's `BertAdam`; docs/design.md decision 8). The engine picks them with
`train.optimizer: bert_adam` and `train.clip_mode: per_tensor`:

    opt = BertAdam(param_groups(model, 0.01), lr=1e-4, eps=1e-6)
    loss.backward()
    clip_grad_norm_per_tensor_(model.parameters(), 1.0)
    opt.step()

BertAdam is Adam without bias correction, with the weight decay added to the update (decoupled, as in AdamW):
per parameter p with gradient g,

    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,   p = p - lr (m / (sqrt(v) + eps) + weight_decay p).

The reference clips inside its step(); here clipping is a separate call so that the engine can unscale fp16
gradients (GradScaler) before it, and so that either optimizer can take either clipping mode.
"""

import torch


class BertAdam(torch.optim.Optimizer):
    """pytorch-pretrained-bert's BertAdam without its built-in schedule and clipping (the engine's LR scheduler
    and clip_grad_norm_per_tensor_ do those). The state holds `exp_avg` (m) and `exp_avg_sq` (v) per parameter."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"BertAdam: need lr > 0, eps > 0, weight_decay >= 0 and betas in [0, 1); got lr={lr}, "
                             f"eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                # one temporary instead of three (sqrt, + eps, /): the same operations in the same order
                update = v.sqrt().add_(group["eps"])
                torch.div(m, update, out=update)
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss


def clip_grad_norm_per_tensor_(params, max_norm: float) -> None:
    """Clip each parameter's gradient to L2 norm `max_norm` on its own (BertAdam's clipping), in place."""
    for p in params:
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_(p, max_norm)
