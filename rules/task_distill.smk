# Beyond the paper: TinyBERT's task distillation (edad_core.task_distill). The teacher row task_distill.teacher is
# fine-tuned per dataset and seed as every row is, its weights kept until the task distillations that read them
# are done (for good when that row is exported too: export.ner.rows); each student of task_distill.rows is
# distilled from it per dataset and seed into the tagger that row `<student>_TD` fine-tunes (rules/finetune.smk).
# No rows configured (the default): no job of this file is planned.
# Needs from rules/common.smk: TD, TD_STUDENTS, task_distill_description, finetune_settings.


# the teacher's weights stay when it is also an exported row (rule export_ner reads them)
TD_TEACHER_WEIGHTS = (directory if TD["teacher"] in config["export"]["ner"]["rows"] else lambda p: temp(directory(p)))


use rule finetune as finetune_kept with:
    output:
        result=f"{RESULTS}/finetune/{{model}}/{{dataset}}/seed{{seed}}/result.json",
        model=TD_TEACHER_WEIGHTS(f"{RESULTS}/finetune/{{model}}/{{dataset}}/seed{{seed}}/model"),
    params:
        settings=as_json(finetune_settings(keep_model=True)),
    wildcard_constraints:
        model=alternatives([TD["teacher"]] if TD_STUDENTS else []),
        dataset=alternatives(NER_DATASETS),
        seed=r"\d+",


ruleorder: finetune_kept > finetune


rule task_distill:
    input:
        script=f"{SCRIPTS}/task_distill.py",
        data=f"{RESULTS}/ner/{{dataset}}/labels.json",
        teacher=f"{RESULTS}/finetune/{TD['teacher']}/{{dataset}}/seed{{seed}}/model",
        teacher_result=f"{RESULTS}/finetune/{TD['teacher']}/{{dataset}}/seed{{seed}}/result.json",
        student=lambda w: model_files(f"{RESULTS}/{REGISTRY[w.student].source}"),
        corpus=[f"{RESULTS}/corpus/corpus.txt"] if TD["unlabelled_sentences"] else [],
    output:
        model=model_files(f"{RESULTS}/train/td_{{student}}/{{dataset}}/seed{{seed}}/student"),
        summary=f"{RESULTS}/train/td_{{student}}/{{dataset}}/seed{{seed}}/train_summary.json",
    params:
        run=lambda w: as_json(task_distill_description(w)),
        data_dir=lambda w, input: os.path.dirname(input.data),
        student_dir=lambda w, input: os.path.dirname(input.student[0]),
        corpus=lambda w, input: input.corpus[0] if input.corpus else "",
        out_dir=lambda w, output: os.path.dirname(output.summary),
        work_dir=f"{WORK}/train/td_{{student}}/{{dataset}}/seed{{seed}}",
        locks=f"{WORK}/gpu_locks",
    wildcard_constraints:
        student=alternatives(TD_STUDENTS),
        dataset=alternatives(NER_DATASETS),
        seed=r"\d+",
    log:
        f"{RESULTS}/logs/train/td_{{student}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/td_{{student}}/{{dataset}}/seed{{seed}}.tsv"
    threads: config["finetune"]["threads"]
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    shell:
        "python -m edad_core.devices --locks {params.locks:q} --"
        " python {input.script:q} --description {params.run:q} --data {params.data_dir:q}"
        " --teacher {input.teacher:q} --teacher-result {input.teacher_result:q} --student {params.student_dir:q}"
        " --corpus={params.corpus:q} --output {params.out_dir:q} --work {params.work_dir:q} > {log:q} 2>&1"
