# Input functions of rule export_ner (rules/export.smk) and of the finetune rule's keep_model. Needs from
# rules/common.smk: RESULTS, REGISTRY, NER_DATASETS, skip_reason.


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


def speed_settings():
    """export.ner.speed, its url_file found in the working directory, else in the workflow's folder (where
    config/demo_corpus_urls.txt ships), as a path relative to the working directory."""
    speed = dict(config["export"]["ner"]["speed"])
    if speed["url_file"] and not os.path.isabs(speed["url_file"]) and not os.path.exists(speed["url_file"]):
        speed["url_file"] = os.path.relpath(os.path.join(workflow.basedir, speed["url_file"]))
    return speed


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
