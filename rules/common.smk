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
