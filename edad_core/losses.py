"""Student/teacher losses: MLM + NSP, TinyBERT general distillation (eq. 1-4), and the EDAD combination.

    tiny = TinyBertLoss(student_hidden, teacher_hidden, student_layers, teacher_layers)   # trains with the student
    parts = tiny(s.hidden_states, s.attention_scores, t.hidden_states, t.attention_scores)  # {emb, hidden, attn, tiny}
    mlm_nsp = mlm_nsp_loss(out.mlm_logits, out.mlm_labels, out.nsp_logits, nsp_labels)     # {mlm, nsp}
    loss = edad_student_loss(alpha, mlm_nsp["mlm"], mlm_nsp["nsp"], parts["tiny"])

Inputs follow edad_core.modeling: `hidden_states` = (embedding output, layer 1, ..., layer N), each [B, L, d];
`attention_scores` = {layer (1-based): pre-softmax scores [B, H, L, L]} for the layers asked for, where H is the
original heads followed by the extension heads when the model is extended.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

# TinyBERT reference: scores at masked keys hold a huge negative additive mask; zero them in both models.
ATTENTION_MASK_THRESHOLD = -100.0


def layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """[(student layer m, teacher layer m*k)] for m = 1..M, k = teacher_layers // student_layers."""
    if student_layers <= 0 or teacher_layers % student_layers:
        raise ValueError(
            f"teacher layers ({teacher_layers}) must be a positive multiple of student layers ({student_layers})"
        )
    k = teacher_layers // student_layers
    return [(m, m * k) for m in range(1, student_layers + 1)]


def distilled_teacher_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layers whose attention scores the distillation needs (3, 6, 9, 12 for 12 -> 4); the student
    needs all of its layers, 1..student_layers."""
    return [t for _, t in layer_map(student_layers, teacher_layers)]


def _mse(student: torch.Tensor, teacher: torch.Tensor, what: str) -> torch.Tensor:
    if student.shape != teacher.shape:
        raise ValueError(f"{what}: student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}")
    return F.mse_loss(student.float(), teacher.detach().float())


def _zero_masked(scores: torch.Tensor) -> torch.Tensor:
    scores = scores.float()
    return scores.masked_fill(scores <= ATTENTION_MASK_THRESHOLD, 0.0)


class TinyBertLoss(nn.Module):
    """TinyBERT general-distillation loss with its one learned map M (student hidden -> teacher hidden), which
    projects both the embedding output and every layer output; M trains with the student (put this module's
    parameters in the student's optimizer)."""

    def __init__(self, student_hidden: int, teacher_hidden: int, student_layers: int, teacher_layers: int):
        super().__init__()
        self.layers = layer_map(student_layers, teacher_layers)
        self.proj = nn.Linear(student_hidden, teacher_hidden)
        nn.init.normal_(self.proj.weight, std=0.02)  # BERT's initializer_range
        nn.init.zeros_(self.proj.bias)

    def forward(self, student_hidden_states, student_attention_scores, teacher_hidden_states,
                teacher_attention_scores) -> dict[str, torch.Tensor]:
        """Returns {emb, hidden, attn, tiny}, all float32 scalars; teacher tensors are detached targets."""
        n_student, n_teacher = self.layers[-1]
        if len(student_hidden_states) != n_student + 1 or len(teacher_hidden_states) != n_teacher + 1:
            raise ValueError(
                f"expected {n_student + 1} student and {n_teacher + 1} teacher hidden states (embeddings, layers),"
                f" got {len(student_hidden_states)} and {len(teacher_hidden_states)}"
            )
        # float32 losses and projection even under autocast: the terms are small differences of large values
        with torch.autocast(device_type=student_hidden_states[0].device.type, enabled=False):
            emb = _mse(self.proj(student_hidden_states[0].float()), teacher_hidden_states[0], "embedding output")
            hidden = attn = 0.0
            for m, t in self.layers:
                pair = f"student layer {m} / teacher layer {t}"
                student_h = self.proj(student_hidden_states[m].float())
                hidden = hidden + _mse(student_h, teacher_hidden_states[t], f"hidden, {pair}")
                if m not in student_attention_scores or t not in teacher_attention_scores:
                    raise KeyError(f"attention scores missing for {pair} (ask the models for these layers)")
                s, te = student_attention_scores[m], teacher_attention_scores[t]
                if s.shape[1] != te.shape[1]:
                    raise ValueError(
                        f"attention head counts differ at {pair}: student {s.shape[1]}, teacher {te.shape[1]} "
                        "(both models must be extended alike)"
                    )
                # the teacher's scores are targets: detached first, so that no graph is kept for their masking
                attn = attn + _mse(_zero_masked(s), _zero_masked(te.detach()), f"attention scores, {pair}")
        return {"emb": emb, "hidden": hidden, "attn": attn, "tiny": emb + hidden + attn}


def mlm_nsp_loss(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor, nsp_logits: torch.Tensor,
                 nsp_labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropies in float32. mlm_logits [n_masked, V] are already gathered at the masked positions, with
    mlm_labels [n_masked]; nsp_logits [B, 2], nsp_labels [B] (0 = is next, BERT's convention)."""
    if mlm_labels.numel() == 0:
        mlm = mlm_logits.float().sum() * 0.0  # a batch without masks: zero, not the NaN of an empty mean
    else:
        mlm = F.cross_entropy(mlm_logits.float(), mlm_labels)
    return {"mlm": mlm, "nsp": F.cross_entropy(nsp_logits.float(), nsp_labels)}


def edad_student_loss(alpha: float, mlm: torch.Tensor, nsp: torch.Tensor, tiny: torch.Tensor) -> torch.Tensor:
    """(1 - alpha) * (mlm + nsp) + alpha * tiny; a zero-weighted part stays in the graph with a zero gradient
    (so DDP's gradient buckets are the same at every step)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return (1.0 - alpha) * (mlm + nsp) + alpha * tiny
