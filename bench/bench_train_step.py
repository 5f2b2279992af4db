"""Time the pieces of a training step that the design makes choices about, on random weights:

- MLM logits at the masked positions only vs at every position (the 48,180-way projection);
- attention through scaled_dot_product_attention vs explicit pre-softmax scores (needed only for distilled layers);
- a whole EDAD step (teacher forward+backward, student forward+backward with TinyBERT terms) vs its parts.

    python bench/bench_train_step.py --sizes mini --batch 16 --length 64 --repeats 5
    python bench/bench_train_step.py --sizes paper --batch 8 --length 128

Prints one JSON line per measurement (median seconds of `repeats` timed runs after one warm-up).
"""

import argparse
import json
import statistics
import time

import torch

from edad_core.losses import TinyBertLoss, distilled_teacher_layers, mlm_nsp_loss
from edad_core.modeling import ExBertConfig, ExBertForPreTraining
from edad_core.pretrain_data import MlmMasker

SIZES = {  # (teacher, student) architectures of config.yaml and config/mini.yaml, extension vocab 17,658
    "paper": (dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                   ext_hidden_size=252, ext_intermediate_size=1024),
              dict(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200,
                   ext_hidden_size=108, ext_intermediate_size=400)),
    "mini": (dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                  ext_hidden_size=132, ext_intermediate_size=512),
             dict(hidden_size=192, num_hidden_layers=3, num_attention_heads=12, intermediate_size=768,
                  ext_hidden_size=60, ext_intermediate_size=256)),
}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", choices=SIZES, default="mini")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    common = dict(vocab_size=30522, ext_vocab_size=17658, ext_num_attention_heads=12, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    teacher_arch, student_arch = SIZES[args.sizes]
    teacher = ExBertForPreTraining(ExBertConfig(**common, **teacher_arch))
    student = ExBertForPreTraining(ExBertConfig(**common, **student_arch))
    teacher.freeze_original()
    tiny = TinyBertLoss(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers,
                        teacher.config.num_hidden_layers)
    layers = distilled_teacher_layers(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    masker = MlmMasker(48180, mask_token_id=103, special_token_ids=[0, 100, 101, 102, 103], pad_token_id=0)
    ids = torch.randint(1000, 48180, (args.batch, args.length))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    nsp = torch.randint(0, 2, (args.batch,))
    masked, labels = masker(ids, torch.Generator().manual_seed(0))

    def student_mlm(at_masked_only: bool):
        def run():
            out = student(masked, mask, types, labels=labels if at_masked_only else None)
            logits = out.mlm_logits if at_masked_only else out.mlm_logits[labels != -100]
            mlm_nsp_loss(logits, labels[labels != -100], out.nsp_logits, nsp)["mlm"].backward()
        return run

    def teacher_forward(score_layers):
        def run():
            with torch.no_grad():
                teacher.bert(masked, mask, types, output_attention_scores=score_layers)
        return run

    def edad_step():
        t_out = teacher(masked, mask, types, labels=labels, output_hidden_states=True, output_attention_scores=layers)
        t_parts = mlm_nsp_loss(t_out.mlm_logits, t_out.mlm_labels, t_out.nsp_logits, nsp)
        s_out = student(masked, mask, types, labels=labels, output_hidden_states=True,
                        output_attention_scores=range(1, student.config.num_hidden_layers + 1))
        s_parts = mlm_nsp_loss(s_out.mlm_logits, s_out.mlm_labels, s_out.nsp_logits, nsp)
        tiny_parts = tiny(s_out.hidden_states, s_out.attention_scores, t_out.hidden_states, t_out.attention_scores)
        (t_parts["mlm"] + t_parts["nsp"] + 0.5 * (s_parts["mlm"] + s_parts["nsp"]) + 0.5 * tiny_parts["tiny"]).backward()

    all_layers = range(1, teacher.config.num_hidden_layers + 1)
    cases = {
        "student fwd+bwd, MLM at masked positions": student_mlm(True),
        "student fwd+bwd, MLM at every position": student_mlm(False),
        "teacher forward, sdpa everywhere": teacher_forward(()),
        "teacher forward, scores at distilled layers": teacher_forward(layers),
        "teacher forward, scores at every layer": teacher_forward(all_layers),
        "EDAD step (teacher + student, fwd+bwd)": edad_step,
    }
    for name, fn in cases.items():
        seconds = timed(fn, args.repeats)
        teacher.zero_grad(set_to_none=True)
        student.zero_grad(set_to_none=True)
        print(json.dumps({"sizes": args.sizes, "batch": args.batch, "length": args.length, "threads": args.threads,
                          "case": name, "seconds": round(seconds, 4)}), flush=True)


if __name__ == "__main__":
    main()
