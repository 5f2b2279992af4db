# Stage 7: the paper's Tables 1-4 (our figures beside the paper's), a verdict on the paper's claims, Table 5 (size
# and inference speed), the figures, and the EDAD student exported for transformers alone. Outputs are marked for
# `snakemake --report`. Needs rules/common.smk (RESULTS, SCRIPTS, CONDA_ENV, NER_DATASETS, as_json, model_files),
# rules/report_inputs.smk and rules/export_inputs.smk (export_targets).


rule tables:
    input:
        script=f"{SCRIPTS}/report.py",
        results=finetune_targets(),
        summaries=[p for paths in timing_summaries().values() for p in paths],
        configs=counted_configs(),  # Tables 1-3 count each row's parameters from its architecture
    output:
        **{f"csv{n}": report(f"{RESULTS}/table{n}.csv", caption=f"../report/table{n}.rst", category="Tables",
                             labels={"table": f"Table {n}", "format": "CSV"}) for n in report_layouts()},
        **{f"md{n}": f"{RESULTS}/table{n}.md" for n in report_layouts()},
        claims_csv=report(f"{RESULTS}/claims.csv", caption="../report/claims.rst", category="Claims",
                          labels={"claims": "comparisons", "format": "CSV"}),
        claims_md=report(f"{RESULTS}/claims.md", caption="../report/claims.rst", category="Claims",
                         labels={"claims": "verdicts and comparisons", "format": "Markdown"}),
        summary=report(f"{RESULTS}/report/summary.csv", caption="../report/summary.rst", category="Tables",
                       labels={"table": "all models", "format": "CSV"}),
    params:
        models=as_json(list(report_models().items())),  # a list: as_json sorts a dict's keys, rows keep this order
        layouts=as_json(report_layouts()),
        datasets=as_json(list(NER_DATASETS)),
        summaries=as_json(timing_summaries()),
        out_dir=lambda w, output: os.path.dirname(output.csv1),
        claims=lambda w, output: os.path.splitext(output.claims_csv)[0],
    log:
        f"{RESULTS}/logs/report/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/tables.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} tables --results {input.results:q} --summaries {params.summaries:q}"
        " --models {params.models:q} --layouts {params.layouts:q} --datasets {params.datasets:q}"
        " --out-dir {params.out_dir:q} --summary {output.summary:q} --claims {params.claims:q} > {log:q} 2>&1"


rule table5:
    input:
        script=f"{SCRIPTS}/report.py",
        summary=rules.tables.output.summary,
        sentences=f"{RESULTS}/ner/{list(NER_DATASETS)[0]}/test.tsv",
        models=[f for name, m in report_models(finetune_models()).items()
                if m["folder"].startswith(RESULTS) and not skip_reason(name) and not m.get("task_runs")
                for f in model_files(m["folder"])],
        exports=export_targets(),  # their speed.json: the tagging rows
    output:
        csv=report(f"{RESULTS}/table5.csv", caption="../report/table5.rst", category="Tables",
                   labels={"table": "Table 5", "format": "CSV"}),
        tagging=report(f"{RESULTS}/table5_tagging.csv", caption="../report/table5_tagging.rst", category="Tables",
                       labels={"table": "Table 5, tagging raw text", "format": "CSV"}),
        md=f"{RESULTS}/table5.md",
    params:
        folders=as_json([[name, m["folder"]] for name, m in report_models(finetune_models()).items()
                         if not skip_reason(name) and not m.get("task_runs")]),  # a _TD row: its student's size
        settings=as_json(config["report"]["throughput"]),
        exports=lambda w, input: as_json(list(input.exports)),
        out=lambda w, output: os.path.splitext(output.csv)[0],
    log:
        f"{RESULTS}/logs/report/table5.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/table5.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=1 if config["train"]["gpus"] else 0,  # GPU throughput is measured when a GPU is present
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} table5 --folders {params.folders:q} --summary {input.summary:q}"
        " --sentences {input.sentences:q} --settings {params.settings:q} --exports {params.exports:q}"
        " --out {params.out:q} > {log:q} 2>&1"


rule plots:
    input:
        script=f"{SCRIPTS}/report.py",
        summary=rules.tables.output.summary,
        metrics=[p for runs in stage_curves().values() for p in runs.values()],
    output:
        f1_vs_time=report(f"{PLOTS}/f1_vs_time.png", caption="../report/f1_vs_time.rst", category="Figures",
                          labels={"figure": "average F1 vs time cost"}),
        schedules=report(f"{PLOTS}/alpha_schedules.png", caption="../report/alpha_schedules.rst",
                         category="Figures", labels={"figure": "alpha schedules"}),
        curves=[report(png, caption="../report/training_curves.rst", category="Training curves",
                       labels={"stage": os.path.basename(png)[len("training_"):-len(".png")]})
                for png in stage_curves()],
    params:
        curves=as_json(stage_curves()),
    log:
        f"{RESULTS}/logs/report/plots.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/plots.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} plots --summary {input.summary:q} --curves {params.curves:q}"
        " --f1-vs-time {output.f1_vs_time:q} --schedules {output.schedules:q} > {log:q} 2>&1"


rule export_student:
    input:
        script=f"{SCRIPTS}/report.py",
        model=model_files(f"{RESULTS}/train/edad_{config['report']['edad_schedule']}/student"),
    output:
        directory(f"{RESULTS}/export/EDAD"),
    params:
        model_dir=lambda w, input: os.path.dirname(input.model[0]),
    log:
        f"{RESULTS}/logs/report/export_student.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/export_student.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} export --model {params.model_dir:q} --out {output:q} > {log:q} 2>&1"
