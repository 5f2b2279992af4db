# Stage 3: WordPiece vocabularies as tokenizer folders (edad_core.vocab): the teacher's own (base), base + domain
# extension (extended, exBERT) and domain-only (domain, oiSciBERT). tokenizers' trainer runs on the rule's threads.


VOCAB_CASE = "--lowercase" if config["vocab"]["lowercase"] else "--no-lowercase"
EXTENSION_FILE = config["vocab"]["extension_file"]  # null: build the extension from the corpus


rule vocab_base:
    input:
        script=f"{SCRIPTS}/vocab.py",
    output:
        multiext(f"{RESULTS}/vocab/base/", vocab="vocab.txt", tokenizer="tokenizer.json",
                 tokenizer_config="tokenizer_config.json", stats="vocab_stats.json"),
    params:
        base=config["models"]["teacher"]["base"],
        case=VOCAB_CASE,
        out_dir=lambda w, output: os.path.dirname(output.vocab),
    log:
        f"{RESULTS}/logs/vocab/base.log",
    benchmark:
        f"{RESULTS}/benchmarks/vocab/base.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} base --base {params.base:q} {params.case:q} --out {params.out_dir:q} > {log:q} 2>&1"


rule vocab_extended:
    input:
        script=f"{SCRIPTS}/vocab.py",
        corpus=[] if EXTENSION_FILE else f"{RESULTS}/corpus/corpus.txt",
        # a local file: its edits rerun the rule (a URL: params.source does when it changes)
        extension=[EXTENSION_FILE] if EXTENSION_FILE and "://" not in EXTENSION_FILE else [],
    output:
        multiext(f"{RESULTS}/vocab/extended/", vocab="vocab.txt", tokenizer="tokenizer.json",
                 tokenizer_config="tokenizer_config.json", stats="vocab_stats.json"),
    params:
        base=config["models"]["teacher"]["base"],
        case=VOCAB_CASE,
        ext_size=config["vocab"]["ext_size"],
        total_size=config["vocab"]["total_size"],
        min_frequency=config["vocab"]["min_frequency"],
        source=lambda w, input: ([f"--extension-file={EXTENSION_FILE}", f"--mirror={MIRROR}"] if EXTENSION_FILE
                                 else ["--corpus", input.corpus]),
        out_dir=lambda w, output: os.path.dirname(output.vocab),
    log:
        f"{RESULTS}/logs/vocab/extended.log",
    benchmark:
        f"{RESULTS}/benchmarks/vocab/extended.tsv"
    threads: config["vocab"]["threads"]
    conda:
        CONDA_ENV
    shell:
        "RAYON_NUM_THREADS={threads} python {input.script:q} extended {params.source:q} --base {params.base:q}"
        " --ext-size {params.ext_size:q} --total-size {params.total_size:q} --min-frequency {params.min_frequency:q}"
        " {params.case:q} --out {params.out_dir:q} > {log:q} 2>&1"


rule vocab_domain:
    input:
        script=f"{SCRIPTS}/vocab.py",
        corpus=f"{RESULTS}/corpus/corpus.txt",
    output:
        multiext(f"{RESULTS}/vocab/domain/", vocab="vocab.txt", tokenizer="tokenizer.json",
                 tokenizer_config="tokenizer_config.json", stats="vocab_stats.json"),
    params:
        case=VOCAB_CASE,
        size=config["vocab"]["domain_only_size"],
        min_frequency=config["vocab"]["min_frequency"],
        out_dir=lambda w, output: os.path.dirname(output.vocab),
    log:
        f"{RESULTS}/logs/vocab/domain.log",
    benchmark:
        f"{RESULTS}/benchmarks/vocab/domain.tsv"
    threads: config["vocab"]["threads"]
    conda:
        CONDA_ENV
    shell:
        "RAYON_NUM_THREADS={threads} python {input.script:q} domain --corpus {input.corpus:q}"
        " --domain-size {params.size:q} --min-frequency {params.min_frequency:q}"
        " {params.case:q} --out {params.out_dir:q} > {log:q} 2>&1"
