"""Our model's training step against transformers' BertForPreTraining, and the attention paths TinyBERT needs.

On equal shapes and equal weights (random; a profile's teacher shape without the extension, vocab 30,522), on the
GPU when there is one, one forward + backward of MLM + NSP, interleaved over several repeats after a warm-up:

- transformers' BertForPreTraining, eager attention, and sdpa attention (MLM logits at every position, as it
  computes them);
- ours (edad_core.modeling.ExBertForPreTraining without extension): MLM logits at the masked positions only
  (what the stages do), at every position, and with pre-softmax scores asked for at the distilled layers only
  (what a teacher of GD and EDAD does);
- the exBERT teacher's forward (extension on, the 17,658-id extension vocab) through sdpa everywhere, with
  scores at the distilled layers, and at every layer.

    python bench/model_step.py                                  # bert-base shapes, batch 8 x 128, two threads
    python bench/model_step.py --profile mini --batch 16 --length 64

Prints one JSON line per case (median, min and max of the wall and CPU seconds; the load average after each
repeat), then one summary line with ours / BertForPreTraining (eager) (the issue's target: <= 0.8).
"""

import torch
from transformers import BertConfig, BertForPreTraining

import harness
from edad_core.losses import distilled_teacher_layers, mlm_nsp_loss
from edad_core.modeling import ExBertConfig, ExBertForPreTraining


def main():
    p = harness.parser(__doc__)
    p.add_argument("--profile", choices=harness.PROFILES, default="paper")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = harness.parse(p)
    config = harness.profile_config(args.profile)
    shape = harness.teacher_shape(args.profile, config)
    torch.manual_seed(0)
    reference = {impl: BertForPreTraining(BertConfig(**{**shape.to_dict(), "attn_implementation": impl}))
                 for impl in ("eager", "sdpa")}
    reference["sdpa"].load_state_dict(reference["eager"].state_dict())
    ours = ExBertForPreTraining(ExBertConfig.from_bert_config(shape))
    # transformers ties the MLM decoder to the word embeddings; ours reads the embeddings directly
    state = {k: v for k, v in reference["eager"].state_dict().items() if not k.startswith("cls.predictions.decoder.")}
    ours.load_state_dict(state)
    teacher_ext = config["models"]["teacher"]
    exbert = ExBertForPreTraining(ExBertConfig.from_bert_config(
        shape, ext_vocab_size=config["vocab"]["ext_size"],
        **{k: teacher_ext[k] for k in ("ext_hidden_size", "ext_intermediate_size", "ext_num_attention_heads")}))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for model in (*reference.values(), ours, exbert):
        model.to(device).train()  # dropout on, as in training

    vocab = shape.vocab_size
    masker = harness.bert_masker(vocab, config["pretrain_data"]["mlm_probability"])
    generator = torch.Generator().manual_seed(0)
    batch = harness.random_batch(vocab, args.batch, args.length, generator)
    masked, labels = masker(batch["input_ids"], generator)
    mask, types, nsp, masked, labels = (t.to(device) for t in (
        batch["attention_mask"], batch["token_type_ids"], batch["next_sentence_label"], masked, labels))
    student_layers = config["models"]["student"]["num_hidden_layers"]
    distilled = distilled_teacher_layers(student_layers, shape.num_hidden_layers)

    def reference_step(impl):
        def run():
            model = reference[impl]
            model(input_ids=masked, attention_mask=mask, token_type_ids=types, labels=labels,
                  next_sentence_label=nsp).loss.backward()
            model.zero_grad(set_to_none=True)
        return run

    def our_step(at_masked_only: bool, score_layers=()):
        def run():
            out = ours(masked, mask, types, labels=labels if at_masked_only else None,
                       output_attention_scores=score_layers)
            logits = out.mlm_logits if at_masked_only else out.mlm_logits[labels != -100]
            parts = mlm_nsp_loss(logits, labels[labels != -100], out.nsp_logits, nsp)
            (parts["mlm"] + parts["nsp"]).backward()
            ours.zero_grad(set_to_none=True)
        return run

    ext_ids = torch.randint(1000, vocab + config["vocab"]["ext_size"], (args.batch, args.length), device=device)

    def exbert_forward(score_layers):
        def run():
            with torch.no_grad():
                exbert.bert(ext_ids, mask, types, output_hidden_states=True, output_attention_scores=score_layers)
        return run

    cases = {
        "BertForPreTraining eager, fwd+bwd": reference_step("eager"),
        "BertForPreTraining sdpa, fwd+bwd": reference_step("sdpa"),
        "ours, MLM at masked positions, fwd+bwd": our_step(True),
        "ours, MLM at every position, fwd+bwd": our_step(False),
        "ours, MLM at masked positions + scores at distilled layers, fwd+bwd": our_step(True, distilled),
        "exBERT teacher forward, sdpa everywhere": exbert_forward(()),
        "exBERT teacher forward, scores at distilled layers": exbert_forward(distilled),
        "exBERT teacher forward, scores at every layer": exbert_forward(range(1, shape.num_hidden_layers + 1)),
    }
    timings = harness.interleaved({name: harness.synchronized(fn, device) for name, fn in cases.items()}, args.repeats)
    common = {"profile": args.profile, "device": device.type, "batch": args.batch, "length": args.length, "threads": args.threads}
    for name, t in timings.items():
        harness.emit({**common, "case": name, "seconds": harness.spread(t["seconds"]),
                      "cpu_seconds": harness.spread(t["cpu_seconds"]), "load": t["load"]})
    ratio = harness.ratio_spread(timings["ours, MLM at masked positions, fwd+bwd"]["seconds"],
                                 timings["BertForPreTraining eager, fwd+bwd"]["seconds"])
    cpu_ratio = harness.ratio_spread(timings["ours, MLM at masked positions, fwd+bwd"]["cpu_seconds"],
                                     timings["BertForPreTraining eager, fwd+bwd"]["cpu_seconds"])
    sdpa = harness.ratio_spread(timings["ours, MLM at masked positions, fwd+bwd"]["seconds"],
                                timings["BertForPreTraining sdpa, fwd+bwd"]["seconds"])
    scores = harness.ratio_spread(timings["ours, MLM at masked positions + scores at distilled layers, fwd+bwd"]["seconds"],
                                  timings["ours, MLM at masked positions, fwd+bwd"]["seconds"])
    loads = [x for t in timings.values() for x in t["load"]]
    harness.summary_line(
        "model_step",
        f"{args.profile} shapes, {args.batch} x {args.length}, {args.threads} threads: ours / BertForPreTraining eager "
        f"{ratio['median']:.3f} (range {ratio['min']:.3f}-{ratio['max']:.3f}; CPU time {cpu_ratio['median']:.3f}), / sdpa "
        f"{sdpa['median']:.3f}; scores at "
        f"the distilled layers cost x{scores['median']:.3f}; load {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    main()
