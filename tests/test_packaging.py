"""Guards for what no solver checks here: environment.yml agrees with pyproject.toml, and CI runs the
README's test command."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "pip" in conda
    assert "-e .[dev]" in pip, "environment.yml must install the repo itself with its dev extra"
    env_reqs = sorted(r for r in pip if not r.startswith("-e"))
    assert sorted(project["dependencies"]) == env_reqs, "same names AND the same version bounds"
    assert {_name(r) for r in project["dependencies"]} >= {
        "torch", "transformers", "datasets", "tokenizers", "bertviz", "matplotlib", "numpy", "tqdm", "regex", "pandas"
    }
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    assert dev >= {"pytest", "nbval", "nbformat", "nbclient", "ipykernel", "jupyterlab", "ruff"}


def test_python_floor():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def _readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(python -m [^\n]+)$", quick, flags=re.M)
    assert len(commands) == 2, f"Quick start must hold exactly two commands, found {commands}"
    assert commands[0].startswith("python -m labsupport run")
    return commands[1]


def test_ci_runs_the_readme_test_command_with_pinned_torch():
    ci = (REPO / ".ci" / "run").read_text()
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert _readme_test_command() in lines
    torch_line = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
    repo_line = next(i for i, line in enumerate(lines) if '-e ".[dev' in line)
    assert torch_line < repo_line, "torch must be installed before the repo (else pip pulls a CUDA build)"
    assert any("venv" in line for line in lines[:torch_line])
