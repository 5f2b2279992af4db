# Stage 1: the NER benchmarks at the pinned commit -> validated TSV files and a label/statistics summary.


rule ner_data:
    input:
        script=f"{SCRIPTS}/ner_data.py",
    output:
        tsv=expand("{results}/ner/{{dataset}}/{split}.tsv", results=RESULTS, split=config["ner"]["splits"]),
        labels=f"{RESULTS}/ner/{{dataset}}/labels.json",
    params:
        base_url=config["ner"]["base_url"],
        splits=config["ner"]["splits"],
        sha256=lambda w: as_json(  # {split: pinned hex or null}
            {s: (config["ner"]["sha256"] or {}).get(f"{w.dataset}/{s}.tsv") for s in config["ner"]["splits"]}
        ),
        mirror=MIRROR,
        repair="--repair" if config["ner"]["repair_iob"] else "",
        max_sentences=(
            f"--max-sentences {config['ner']['max_sentences']}" if config["ner"]["max_sentences"] else ""
        ),
        download_dir=f"{WORK}/downloads/ner/{{dataset}}",
        out_dir=f"{RESULTS}/ner/{{dataset}}",
    log:
        f"{RESULTS}/logs/ner_data/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ner_data/{{dataset}}.tsv"
    wildcard_constraints:
        dataset="[^/]+",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script} --dataset {wildcards.dataset:q} --base-url {params.base_url:q}"
        " --splits {params.splits} --sha256 {params.sha256:q} --mirror {params.mirror:q}"
        " {params.repair} {params.max_sentences}"
        " --download-dir {params.download_dir:q} --out-dir {params.out_dir:q} > {log} 2>&1"
