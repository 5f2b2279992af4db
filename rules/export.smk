# Taggers: the fine-tuned model of each export.ner row x dataset (the seed whose devel entity F1 is the median, or
# export.ner.seed), exported for `edad predict` and transformers' pipeline, with its model card (edad_core/export.py).
# The finetune rule keeps these models (kept_model()), so nothing is trained again.
# Needs rules/common.smk (RESULTS, SCRIPTS, CONDA_ENV, NER_DATASETS, REGISTRY, skip_reason, alternatives, as_json)
# and rules/report.smk (rule tables: the card's figures are report/summary.csv's).


def export_pairs():
    """(row, dataset) of every tagger to export (rows that cannot be had offline are left out, as in finetune)."""
    ner = config["export"]["ner"]
    if unknown := [r for r in ner["rows"] if r not in REGISTRY]:
        raise ValueError(f"export.ner.rows: unknown row(s) {unknown}; the configured rows are {list(REGISTRY)}")
    return [(r, d) for r in ner["rows"] if not skip_reason(r) for d in ner["datasets"] or NER_DATASETS]


def kept_model(model, dataset):
    """Whether a finetune job keeps its model: finetune.keep_model, or its row and dataset are exported."""
    return config["finetune"]["keep_model"] or (model, dataset) in export_pairs()


def export_targets():
    return [f"{RESULTS}/export/{r}-{d}" for r, d in export_pairs()]


def export_provenance(model):
    """What the card says about how the model was made (the rest it reads from the run and the model folder)."""
    student = config["models"]["student"]
    shape = (f"{student['num_hidden_layers']} layers, hidden size {student['hidden_size']}, "
             f"{student['num_attention_heads']} heads, extension hidden size {student['ext_hidden_size']}")
    return {"row": model, "teacher": config["models"]["teacher"]["base"], "threads": config["finetune"]["threads"],
            "student": shape if REGISTRY[model].role == "student" else "none: this is a teacher row",
            "sources": config["corpus"]["sources"]}


def export_command(output):
    files = [os.path.relpath(f, workflow.basedir) for f in workflow.overwrite_configfiles]
    return " ".join(["snakemake", *(f"--configfile {f}" for f in files), "--cores all", output])


rule export_ner:
    input:
        script=f"{SCRIPTS}/export.py",
        results=lambda w: [f"{RESULTS}/finetune/{w.model}/{w.dataset}/seed{s}/result.json"
                           for s in config["finetune"]["seeds"]],
        summary=rules.tables.output.summary,
        test=f"{RESULTS}/ner/{{dataset}}/test.tsv",
        corpus=f"{RESULTS}/corpus/stats.json",
    output:
        directory(f"{RESULTS}/export/{{model}}-{{dataset}}"),
    params:
        seed=config["export"]["ner"]["seed"] if config["export"]["ner"]["seed"] is not None else "median",
        datasets=as_json(list(NER_DATASETS)),
        provenance=lambda w: as_json(export_provenance(w.model)),
        command=lambda w, output: export_command(output[0]),
    wildcard_constraints:
        model=alternatives(REGISTRY),
        dataset=alternatives(NER_DATASETS),
    log:
        f"{RESULTS}/logs/export/{{model}}-{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export/{{model}}-{{dataset}}.tsv"
    threads: config["finetune"]["threads"]  # the run's thread count: its test predictions are reproduced exactly
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} --results {input.results:q} --seed {params.seed:q} --summary {input.summary:q}"
        " --test {input.test:q} --corpus-stats {input.corpus:q} --datasets {params.datasets:q}"
        " --provenance {params.provenance:q} --command {params.command:q} --out {output:q} > {log:q} 2>&1"
