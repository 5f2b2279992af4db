# EDAD workflow: domain vocab -> pretraining examples -> teacher adaptation / TinyBERT GD / EDAD -> NER -> tables.
# Default config is the paper; overlays: --configfile config/mini.yaml (CPU demo) or config/smoke.yaml (tests).
import os

from snakemake.utils import min_version, validate

from edad_core.config_checks import check_config

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "config/schema.yaml")
check_config(config)  # keys that must fit together: fails at `snakemake -n`, naming them


include: "rules/common.smk"
include: "rules/ner_data.smk"
include: "rules/corpus.smk"
include: "rules/vocab.smk"
include: "rules/pretrain_data.smk"
include: "rules/train.smk"
include: "rules/finetune.smk"
include: "rules/task_distill.smk"
include: "rules/report_inputs.smk"
include: "rules/export_inputs.smk"
include: "rules/report.smk"
include: "rules/export.smk"


rule all:
    input:
        final_targets(),
    default_target: True
