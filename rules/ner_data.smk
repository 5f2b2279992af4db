# Stage 1: the NER datasets (the paper's benchmarks at the pinned commit, or a user's own files) -> validated
# TSV files and a label/statistics summary.


rule ner_data:
    input:
        script=f"{SCRIPTS}/ner_data.py",
    output:
        tsv=expand("{results}/ner/{{dataset}}/{split}.tsv", results=RESULTS, split=config["ner"]["splits"]),
        labels=f"{RESULTS}/ner/{{dataset}}/labels.json",
    params:
        spec=lambda w: as_json(NER_DATASETS[w.dataset]),
        mirror=MIRROR,
        repair=str(config["ner"]["repair_iob"]).lower(),
        max_sentences=config["ner"]["max_sentences"] or "all",
        download_dir=f"{WORK}/downloads/ner/{{dataset}}",
        out_dir=f"{RESULTS}/ner/{{dataset}}",
    log:
        f"{RESULTS}/logs/ner_data/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ner_data/{{dataset}}.tsv"
    wildcard_constraints:
        dataset=alternatives(NER_DATASETS),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} --dataset {wildcards.dataset:q} --spec {params.spec:q} --mirror={params.mirror:q}"
        " --repair {params.repair:q} --max-sentences {params.max_sentences:q}"
        " --download-dir {params.download_dir:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"
