# Stage 2: domain corpus from the configured sources (pmc / urls / local) -> N-token sentence-split subset,
# its statistics and the manifest of every document used (see edad_core.corpus).
from edad_core.corpus import source_files


rule corpus:
    input:
        script=f"{SCRIPTS}/corpus.py",
        files=lambda wildcards: source_files(config["corpus"]["sources"]),  # also validates corpus.sources
    output:
        txt=f"{RESULTS}/corpus/corpus.txt",
        stats=f"{RESULTS}/corpus/stats.json",
        manifest=f"{RESULTS}/corpus/manifest.tsv",
    params:
        sources=as_json(config["corpus"]["sources"]),
        n_tokens=config["corpus"]["n_tokens"] or "all",
        max_bad_fraction=config["corpus"]["max_bad_fraction"],
        exclude=as_json(config["corpus"]["exclude"]),
        mirror=MIRROR,
        cache_dir=f"{WORK}/corpus_cache",
    log:
        f"{RESULTS}/logs/corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/corpus.tsv"
    threads: 1  # text processing is one process; pmc/urls downloads run on their own I/O threads
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} --sources {params.sources:q} --n-tokens {params.n_tokens:q}"
        " --max-bad-fraction {params.max_bad_fraction:q} --exclude {params.exclude:q}"
        " --mirror={params.mirror:q} --cache-dir {params.cache_dir:q}"
        " --out {output.txt:q} --stats {output.stats:q} --manifest {output.manifest:q} > {log:q} 2>&1"
