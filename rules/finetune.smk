# Stage 6: NER fine-tuning and evaluation of every model x dataset x seed (edad_core.ner), each job on one GPU that
# it claims itself (edad_core.devices) or on the CPU; and the published checkpoints' own vocabularies for their GD.


rule finetune:
    input:
        script=f"{SCRIPTS}/finetune.py",
        data=f"{RESULTS}/ner/{{dataset}}/labels.json",
        model=lambda w: model_files(finetune_source(w)) if REGISTRY[w.model].workflow_made else [],
        tokenizer=lambda w: [f"{finetune_tokenizer(w.model)}/tokenizer_config.json"] if w.model in PUBLISHED else [],
    output:
        result=f"{RESULTS}/finetune/{{model}}/{{dataset}}/seed{{seed}}/result.json",
    params:
        source=finetune_source,
        tokenizer=lambda w: finetune_tokenizer(w.model),
        role=lambda w: REGISTRY[w.model].role,
        settings=lambda w: as_json(finetune_settings(keep_model=kept_model(w.model, w.dataset))),  # rules/export_inputs.smk
        data_dir=lambda w, input: os.path.dirname(input.data),
        out_dir=lambda w, output: os.path.dirname(output.result),
        work_dir=f"{WORK}/finetune/{{model}}/{{dataset}}/seed{{seed}}",
        locks=f"{WORK}/gpu_locks",
    wildcard_constraints:
        model=alternatives(REGISTRY),
        dataset=alternatives(NER_DATASETS),
        seed=r"\d+",
    log:
        f"{RESULTS}/logs/finetune/{{model}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{model}}/{{dataset}}/seed{{seed}}.tsv"
    threads: config["finetune"]["threads"]
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    shell:
        "python -m edad_core.devices --locks {params.locks:q} --"
        " python {input.script:q} --name {wildcards.model:q} --model {params.source:q}"
        " --tokenizer={params.tokenizer:q} --role {params.role:q}"
        " --dataset {wildcards.dataset:q} --data {params.data_dir:q} --seed {wildcards.seed:q}"
        " --settings {params.settings:q} --output {params.out_dir:q} --work {params.work_dir:q} > {log:q} 2>&1"


rule skipped_model:
    output:
        f"{RESULTS}/finetune/{{model}}/skipped.json",
    params:
        reason=lambda w: skip_reason(w.model),
    wildcard_constraints:
        model=alternatives(REGISTRY),
    log:
        f"{RESULTS}/logs/finetune/{{model}}/skipped.log",
    run:
        from edad_core.files import atomic_write_json

        atomic_write_json(output[0], {"model": wildcards.model, "reason": params.reason}, indent=2)


rule vocab_published:
    input:
        script=f"{SCRIPTS}/vocab.py",
    output:
        multiext(f"{RESULTS}/vocab/{{published}}/", vocab="vocab.txt", tokenizer="tokenizer.json",
                 tokenizer_config="tokenizer_config.json", stats="vocab_stats.json"),
    params:
        hub=lambda w: PUBLISHED_SPEC[w.published]["hub"],
        case=lambda w: "--lowercase" if PUBLISHED_SPEC[w.published]["lowercase"] else "--no-lowercase",
        out_dir=lambda w, output: os.path.dirname(output.vocab),
    wildcard_constraints:
        published="pub_[a-z]+",
    log:
        f"{RESULTS}/logs/vocab/{{published}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/vocab/{{published}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} base --base {params.hub:q} {params.case:q} --out {params.out_dir:q} > {log:q} 2>&1"
