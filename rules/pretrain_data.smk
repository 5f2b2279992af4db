# Stage 4: BERT sentence-pair pretraining examples of the corpus, one memory-mapped store per vocabulary
# (edad_core.pretrain_data). The output does not depend on the number of processes ({threads}).


rule pretrain_data:
    input:
        script=f"{SCRIPTS}/pretrain_data.py",
        corpus=f"{RESULTS}/corpus/corpus.txt",
        vocab=f"{RESULTS}/vocab/{{vocab}}/vocab.txt",
        tokenizer=f"{RESULTS}/vocab/{{vocab}}/tokenizer.json",
    output:
        meta=f"{RESULTS}/pretrain_data/{{vocab}}/meta.json",
        input_ids=f"{RESULTS}/pretrain_data/{{vocab}}/input_ids.bin",
        offsets=f"{RESULTS}/pretrain_data/{{vocab}}/offsets.npy",
        segment_a_lengths=f"{RESULTS}/pretrain_data/{{vocab}}/segment_a_lengths.npy",
        nsp_labels=f"{RESULTS}/pretrain_data/{{vocab}}/nsp_labels.npy",
    params:
        max_seq_length=config["pretrain_data"]["max_seq_length"],
        short_seq_prob=config["pretrain_data"]["short_seq_prob"],
        random_next_prob=config["pretrain_data"]["random_next_prob"],
        dupe_factor=config["pretrain_data"]["dupe_factor"],
        seed=config["pretrain_data"]["seed"],
        chunk_sentences=config["pretrain_data"]["chunk_sentences"],
        tokenizer_dir=lambda w, input: os.path.dirname(input.tokenizer),
        out_dir=lambda w, output: os.path.dirname(output.meta),
    log:
        f"{RESULTS}/logs/pretrain_data/{{vocab}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_data/{{vocab}}.tsv"
    wildcard_constraints:
        vocab="base|extended|domain|pub_[a-z]+",
    threads: config["pretrain_data"]["num_proc"]
    conda:
        CONDA_ENV
    shell:
        "python {input.script:q} --corpus {input.corpus:q} --tokenizer-dir {params.tokenizer_dir:q}"
        " --out-dir {params.out_dir:q} --max-seq-length {params.max_seq_length:q}"
        " --short-seq-prob {params.short_seq_prob:q} --random-next-prob {params.random_next_prob:q}"
        " --dupe-factor {params.dupe_factor:q} --seed {params.seed:q} --chunk-sentences {params.chunk_sentences:q}"
        " --num-proc {threads} > {log:q} 2>&1"
