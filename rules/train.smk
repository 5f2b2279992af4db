# Stage 5: teacher adaptation, TinyBERT general distillation and EDAD joint training, on one engine.
# Checkpoints live under WORK (not declared outputs: Snakemake deletes outputs of failed jobs), so a rerun resumes.


rule adapt:
    input:
        script=f"{SCRIPTS}/train.py",
        data=lambda w: f"{RESULTS}/pretrain_data/{ADAPT_VOCAB[w.method]}/meta.json",
        tokenizer=lambda w: f"{RESULTS}/vocab/{ADAPT_VOCAB[w.method]}/vocab.txt",
    output:
        model=model_files(f"{RESULTS}/train/adapt_{{method}}/teacher"),
        summary=f"{RESULTS}/train/adapt_{{method}}/train_summary.json",
    params:
        launch=launcher(),
        base=config["models"]["teacher"]["base"],
        models=as_json({"teacher": config["models"]["teacher"]}),
        settings=lambda w: train_settings("adapt", w.method),
        data_dir=lambda w, input: os.path.dirname(input.data),
        tokenizer_dir=lambda w, input: os.path.dirname(input.tokenizer),
        out_dir=lambda w, output: os.path.dirname(output.summary),
        work_dir=f"{WORK}/train/adapt_{{method}}",
    wildcard_constraints:
        method="biobert|scibert|exbert",
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
        "{params.launch} {input.script} adapt --method {wildcards.method} --base {params.base:q}"
        " --models {params.models:q} --settings {params.settings:q}"
        " --data {params.data_dir:q} --tokenizer {params.tokenizer_dir:q}"
        " --output {params.out_dir:q} --work {params.work_dir:q} > {log} 2>&1"


rule distill:
    input:
        script=f"{SCRIPTS}/train.py",
        teacher=lambda w: [] if w.teacher == "bert" else model_files(teacher_model(w.teacher)),
        data=lambda w: f"{RESULTS}/pretrain_data/{teacher_vocab(w.teacher)}/meta.json",
        tokenizer=lambda w: f"{RESULTS}/vocab/{teacher_vocab(w.teacher)}/vocab.txt",
    output:
        model=model_files(f"{RESULTS}/train/gd_{{teacher}}/student"),
        summary=f"{RESULTS}/train/gd_{{teacher}}/train_summary.json",
    params:
        launch=launcher(),
        teacher=lambda w: teacher_model(w.teacher),
        models=as_json({"student": config["models"]["student"]}),
        settings=lambda w: train_settings("distill"),
        data_dir=lambda w, input: os.path.dirname(input.data),
        tokenizer_dir=lambda w, input: os.path.dirname(input.tokenizer),
        out_dir=lambda w, output: os.path.dirname(output.summary),
        work_dir=f"{WORK}/train/gd_{{teacher}}",
    wildcard_constraints:
        teacher="bert|biobert|scibert|exbert",
    log:
        f"{RESULTS}/logs/train/gd_{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/gd_{{teacher}}.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    conda:
        CONDA_ENV
    shell:
        "{params.launch} {input.script} distill --teacher {params.teacher:q}"
        " --models {params.models:q} --settings {params.settings:q}"
        " --data {params.data_dir:q} --tokenizer {params.tokenizer_dir:q}"
        " --output {params.out_dir:q} --work {params.work_dir:q} > {log} 2>&1"


rule edad:
    input:
        script=f"{SCRIPTS}/train.py",
        data=f"{RESULTS}/pretrain_data/extended/meta.json",
        tokenizer=f"{RESULTS}/vocab/extended/vocab.txt",
    output:
        teacher=model_files(f"{RESULTS}/train/edad_{{schedule}}/teacher"),
        student=model_files(f"{RESULTS}/train/edad_{{schedule}}/student"),
        summary=f"{RESULTS}/train/edad_{{schedule}}/train_summary.json",
    params:
        launch=launcher(),
        base=config["models"]["teacher"]["base"],
        models=as_json(config["models"]),
        settings=lambda w: train_settings("edad"),
        data_dir=lambda w, input: os.path.dirname(input.data),
        tokenizer_dir=lambda w, input: os.path.dirname(input.tokenizer),
        out_dir=lambda w, output: os.path.dirname(output.summary),
        work_dir=f"{WORK}/train/edad_{{schedule}}",
    wildcard_constraints:
        schedule="|".join(config["train"]["edad"]["schedules"]),
    log:
        f"{RESULTS}/logs/train/edad_{{schedule}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/edad_{{schedule}}.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    conda:
        CONDA_ENV
    shell:
        "{params.launch} {input.script} edad --schedule {wildcards.schedule} --base {params.base:q}"
        " --models {params.models:q} --settings {params.settings:q}"
        " --data {params.data_dir:q} --tokenizer {params.tokenizer_dir:q}"
        " --output {params.out_dir:q} --work {params.work_dir:q} > {log} 2>&1"
