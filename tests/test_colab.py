"""First contact in Colab: the install cell must not touch Colab's kernel stack, and must install the release
of the notebook the student opened."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import torch

import labsupport
from labsupport import nbtools

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "tests" / "colab_constraints.txt"


def _dry_run(tmp_path: Path, *target: str) -> subprocess.CompletedProcess:
    """Resolve `target` from scratch (nothing installed counts) against Colab's pins; install nothing.
    Colab brings its own torch: pin ours to the installed one, so the resolver never reaches for a CUDA build."""
    torch_pin = tmp_path / "torch.txt"
    torch_pin.write_text(f"torch=={torch.__version__}\n")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--disable-pip-version-check", "--report", str(tmp_path / "report.json"),
           "-c", str(CONSTRAINTS), "-c", str(torch_pin), *target]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _pins() -> dict[str, str]:
    lines = [ln.strip() for ln in CONSTRAINTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in (ln.split("==") for ln in lines)}


@pytest.mark.slow
def test_base_dependencies_resolve_against_colabs_kernel_pins(tmp_path):
    result = _dry_run(tmp_path, str(REPO))
    assert result.returncode == 0, "the package conflicts with Colab's kernel pins:\n" + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    chosen = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in report["install"]}
    assert "accelerate" in chosen and "transformers" in chosen  # the resolution really covered our dependencies
    for name, version in _pins().items():
        assert chosen.get(name, version) == version, f"{name} would change from Colab's {version}"


@pytest.mark.slow
def test_the_check_catches_a_kernel_package_in_the_dependencies(tmp_path):
    # what the base dependencies held before: ipywidgets>=8 upgrades Colab's ipywidgets 7.7.1
    result = _dry_run(tmp_path, "ipywidgets>=8.0")
    assert result.returncode != 0 and "ResolutionImpossible" in result.stderr


def test_constraints_name_their_source():
    text = CONSTRAINTS.read_text()
    assert "googlecolab/backend-info" in text and "commit" in text
    assert {"ipykernel", "ipython", "jupyter-client", "tornado"} <= set(_pins())


def test_base_dependencies_hold_no_kernel_or_tooling_package():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    assert not names & {"ipykernel", "ipython", "ipywidgets", "jupyter-client", "nbclient", "nbformat", "jupyterlab",
                        "notebook", "tornado", "torchmetrics", "pytest"}
    assert "accelerate" in names  # the 🤗 Trainer (Lab 07) needs it


def test_release_is_the_package_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert labsupport.__version__ == project["version"] and labsupport.RELEASE == f"v{project['version']}"


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                         + sorted((REPO / "notebooks" / "student").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_installs_and_opens_the_pinned_release(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == nbtools.colab_install_cell(), "run `python -m labsupport refresh` to re-pin"
    assert f"@{labsupport.RELEASE}\"" in code[0].source
    folder = "notebooks/student/" if path.parent.name == "student" else "notebooks/"
    badge = nbtools.colab_badge_prefix() + folder + path.name
    assert badge in nb.cells[0].source, f"the Colab badge must open {badge}"
