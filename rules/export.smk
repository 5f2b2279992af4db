# Taggers: the fine-tuned model of each export.ner row x dataset (the seed whose devel entity F1 is the median, or
# export.ner.seed), exported for `edad predict` and transformers' pipeline, with its ONNX files, the speed of each
# backend on raw text (export.ner.speed) and its model card (edad_core/export.py).
# The finetune rule keeps these models (kept_model()), so nothing is trained again.
# Needs rules/common.smk (RESULTS, WORK, MIRROR, SCRIPTS, CONDA_ENV, NER_DATASETS, REGISTRY, alternatives, as_json),
# rules/export_inputs.smk and rules/report.smk (rule tables: the card's figures are report/summary.csv's).


rule export_ner:
    input:
        script=f"{SCRIPTS}/export.py",
        results=lambda w: [f"{RESULTS}/finetune/{w.model}/{w.dataset}/seed{s}/result.json"
                           for s in config["finetune"]["seeds"]],
        # the task-distillation teacher's weights are an output of finetune_kept (rules/task_distill.smk): named, so
        # that weights deleted before this row was exported are made again (the finetune rule's own keep_model
        # param makes a rerun there)
        models=lambda w: [f"{RESULTS}/finetune/{w.model}/{w.dataset}/seed{s}/model" for s in config["finetune"]["seeds"]]
                         if TD_STUDENTS and w.model == TD["teacher"] else [],
        summary=rules.tables.output.summary,
        test=f"{RESULTS}/ner/{{dataset}}/test.tsv",
        corpus=f"{RESULTS}/corpus/stats.json",
        speed_urls=speed_settings()["url_file"] or [],
    output:
        directory(f"{RESULTS}/export/{{model}}-{{dataset}}"),
    params:
        seed=config["export"]["ner"]["seed"] if config["export"]["ner"]["seed"] is not None else "median",
        datasets=as_json(list(NER_DATASETS)),
        provenance=lambda w: as_json(export_provenance(w.model)),
        command=lambda w, output: export_command(output[0]),
        onnx=as_json(config["export"]["ner"]["onnx"]),
        speed=as_json(speed_settings()),
        mirror=MIRROR,
        cache_dir=f"{WORK}/corpus_cache",  # the corpus rule's download cache: its .txt articles are already there
    wildcard_constraints:
        model=alternatives(REGISTRY),
        dataset=alternatives(NER_DATASETS),
    log:
        f"{RESULTS}/logs/export/{{model}}-{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export/{{model}}-{{dataset}}.tsv"
    # the speed's threads (its timing has the cores to itself); the check runs at the fine-tuning's
    threads: max(config["export"]["ner"]["speed"]["threads"], config["finetune"]["threads"])
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} --results {input.results:q} --seed {params.seed:q} --summary {input.summary:q}"
        " --test {input.test:q} --corpus-stats {input.corpus:q} --datasets {params.datasets:q}"
        " --provenance {params.provenance:q} --command {params.command:q} --onnx {params.onnx:q}"
        " --speed {params.speed:q} --mirror={params.mirror:q} --cache-dir {params.cache_dir:q}"
        " --out {output:q} > {log:q} 2>&1"
