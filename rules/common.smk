# Paths, the model registry derived from config, and input functions shared by every rule file.
import json
import os

RESULTS = config["results"]
WORK = config["work"]
SCRIPTS = os.path.join(workflow.basedir, "workflow_scripts")
MIRROR = config["mirror"] or os.environ.get("EDAD_MIRROR", "")
CONDA_ENV = "../envs/edad.yaml"


def as_json(value):
    """A config value as one shell-safe JSON argument (params change -> rerun)."""
    return json.dumps(value, sort_keys=True)


# ---- model registry: which vocabulary and which teacher each training run uses --------------------------------
ADAPT_VOCAB = {"biobert": "base", "scibert": "domain", "exbert": "extended"}


def teacher_vocab(teacher):
    """Vocabulary of a distillation teacher: `bert` is the base checkpoint itself, the others are adapted."""
    return "base" if teacher == "bert" else ADAPT_VOCAB[teacher]


def teacher_model(teacher):
    """The teacher folder (or base checkpoint spec) GD reads."""
    if teacher == "bert":
        return config["models"]["teacher"]["base"]
    return f"{RESULTS}/train/adapt_{teacher}/teacher"


def launcher():
    """`python` for one process, torchrun for DDP (`--standalone` picks a free rendezvous port)."""
    nproc = config["train"]["processes"]
    if nproc == 1:
        return "python"
    return f"python -m torch.distributed.run --standalone --nproc-per-node {nproc}"


def model_files(folder):
    return [f"{folder}/config.json", f"{folder}/model.safetensors", f"{folder}/vocab.txt"]


def train_settings(stage, method=None):
    """Everything of config.train a run depends on (a change reruns it)."""
    train = config["train"]
    section = train[stage]
    settings = {k: train[k] for k in ("batch_size", "per_device_batch_size", "max_grad_norm", "weight_decay",
                                      "precision", "checkpoint_every", "log_every", "seed", "group_by_length")}
    settings.update(epochs=section["epochs"], max_steps=section["max_steps"], lr=section["lr"],
                    warmup_ratio=section["warmup_ratio"],
                    lr_schedule=section["lr_schedule"][method] if method else section["lr_schedule"],
                    mlm_probability=config["pretrain_data"]["mlm_probability"])
    return as_json(settings)


def training_targets():
    train = config["train"]
    targets = [f"{RESULTS}/train/adapt_{m}/train_summary.json" for m in train["adapt"]["methods"]]
    targets += [f"{RESULTS}/train/gd_{t}/train_summary.json" for t in train["distill"]["teachers"]]
    targets += [f"{RESULTS}/train/edad_{s}/train_summary.json" for s in train["edad"]["schedules"]]
    return targets


def ner_targets():
    return [f"{RESULTS}/ner/{d}/labels.json" for d in config["ner"]["datasets"]]


def final_targets():
    return ner_targets() + training_targets()
