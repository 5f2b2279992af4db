# Stage 5: teacher adaptation, TinyBERT general distillation and EDAD joint training, on one engine. One rule
# definition (adapt) and two variants of it: they differ in inputs, outputs and the run description only.
# Checkpoints live under WORK (not declared outputs: Snakemake deletes outputs of failed jobs), so a rerun resumes.


rule adapt:
    input:
        script=f"{SCRIPTS}/train.py",
        data=lambda w: f"{RESULTS}/pretrain_data/{ADAPT_VOCAB[w.method]}/meta.json",
        tokenizer=lambda w: f"{RESULTS}/vocab/{ADAPT_VOCAB[w.method]}/vocab.txt",
    output:
        model=model_files(f"{RESULTS}/train/adapt_{{method}}/teacher"),
        summary=f"{RESULTS}/train/adapt_{{method}}/train_summary.json",
        metrics=f"{RESULTS}/train/adapt_{{method}}/metrics.jsonl",
    params:
        **train_params("adapt", "method"),
    wildcard_constraints:
        method=alternatives(config["train"]["adapt"]["methods"]),
    log:
        f"{RESULTS}/logs/train/adapt_{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/adapt_{{method}}.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    conda:
        CONDA_ENV
    shell:
        "{params.launch} {input.script:q} --description {params.run:q} --data {params.data_dir:q}"
        " --tokenizer {params.tokenizer_dir:q} --output {params.out_dir:q} --work {params.work_dir:q} > {log:q} 2>&1"


use rule adapt as distill with:
    input:
        script=f"{SCRIPTS}/train.py",
        teacher=lambda w: model_files(teacher_model(w.teacher)) if w.teacher in ADAPT_VOCAB else [],  # adapted here
        data=lambda w: f"{RESULTS}/pretrain_data/{teacher_vocab(w.teacher)}/meta.json",
        tokenizer=lambda w: f"{RESULTS}/vocab/{teacher_vocab(w.teacher)}/vocab.txt",
    output:
        model=model_files(f"{RESULTS}/train/gd_{{teacher}}/student"),
        summary=f"{RESULTS}/train/gd_{{teacher}}/train_summary.json",
        metrics=f"{RESULTS}/train/gd_{{teacher}}/metrics.jsonl",
    params:
        **train_params("distill", "teacher"),
    wildcard_constraints:
        teacher=alternatives(config["train"]["distill"]["teachers"]),
    log:
        f"{RESULTS}/logs/train/gd_{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/gd_{{teacher}}.tsv"


use rule adapt as edad with:
    input:
        script=f"{SCRIPTS}/train.py",
        data=f"{RESULTS}/pretrain_data/extended/meta.json",
        tokenizer=f"{RESULTS}/vocab/extended/vocab.txt",
    output:
        teacher=model_files(f"{RESULTS}/train/edad_{{schedule}}/teacher"),
        student=model_files(f"{RESULTS}/train/edad_{{schedule}}/student"),
        summary=f"{RESULTS}/train/edad_{{schedule}}/train_summary.json",
        metrics=f"{RESULTS}/train/edad_{{schedule}}/metrics.jsonl",
    params:
        **train_params("edad", "schedule"),
    wildcard_constraints:
        schedule=alternatives(config["train"]["edad"]["schedules"]),
    log:
        f"{RESULTS}/logs/train/edad_{{schedule}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/edad_{{schedule}}.tsv"


# Timing repeats (train.timing_repeats): the same run again, for its train_seconds only (Table 1's time cost is
# the mean of repeated runs with a 95% interval). Inputs as the run's own rule.
use rule adapt as adapt_repeat with:
    output:
        summary=f"{RESULTS}/timing/adapt_{{method}}/repeat{{repeat}}/train_summary.json",
    params:
        **train_params("adapt", "method", repeat=True),
    log:
        f"{RESULTS}/logs/timing/adapt_{{method}}/repeat{{repeat}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/timing/adapt_{{method}}/repeat{{repeat}}.tsv"


use rule distill as distill_repeat with:
    output:
        summary=f"{RESULTS}/timing/gd_{{teacher}}/repeat{{repeat}}/train_summary.json",
    params:
        **train_params("distill", "teacher", repeat=True),
    log:
        f"{RESULTS}/logs/timing/gd_{{teacher}}/repeat{{repeat}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/timing/gd_{{teacher}}/repeat{{repeat}}.tsv"


use rule edad as edad_repeat with:
    output:
        summary=f"{RESULTS}/timing/edad_{{schedule}}/repeat{{repeat}}/train_summary.json",
    params:
        **train_params("edad", "schedule", repeat=True),
    log:
        f"{RESULTS}/logs/timing/edad_{{schedule}}/repeat{{repeat}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/timing/edad_{{schedule}}/repeat{{repeat}}.tsv"
