"""The package boundary: students install `labsupport` only; the grader is its own distribution (`labgrade`,
grading/pyproject.toml) and works from a non-editable install, away from any checkout.

The declaration tests are fast and run with the README's test command. `--distributions` (CI runs it, about a
minute on 2 cores) also builds both wheels offline, checks what each one holds, installs them non-editable into
a fresh virtual environment and runs the installed `labgrade`: --help, the notebooks error, a selftest and a
Gradescope bundle that grades the solution."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parent.parent
ROOT = tomllib.loads((REPO / "pyproject.toml").read_text())
GRADER = tomllib.loads((REPO / "grading" / "pyproject.toml").read_text())


def _package_data_files(config: dict, package: str, folder: Path) -> list[str]:
    """The files under `folder` that the config's package-data globs for `package` select."""
    globs = config["tool"]["setuptools"]["package-data"][package]
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return sorted(f for f in files if any(fnmatch.fnmatch(f, g) for g in globs))


def test_student_wheel_declares_labsupport_only():
    find = ROOT["tool"]["setuptools"]["packages"]["find"]
    found = find_packages(str(REPO), include=find["include"], exclude=find.get("exclude", ()))
    assert "labsupport" in found and all(p.split(".")[0] == "labsupport" for p in found), found
    assert set(ROOT["tool"]["setuptools"]["package-data"]) == {"labsupport"}
    assert set(ROOT["project"]["scripts"]) == {"labsupport"}, "labgrade is the grader's script, not the course's"
    extras = ROOT["project"]["optional-dependencies"]
    assert "grading" not in extras
    assert not any("jinja2" in r or "grading" in r for reqs in extras.values() for r in reqs)


def test_grader_distribution_declares_its_package_data():
    project, setup = GRADER["project"], GRADER["tool"]["setuptools"]
    assert project["name"] == "labgrade" and project["scripts"] == {"labgrade": "grading.cli:main"}
    assert setup["packages"] == ["grading"] and setup["package-dir"] == {"grading": "."}  # `import grading`
    assert project["requires-python"] == ROOT["project"]["requires-python"]
    # the grader drives labsupport's checks: it pins the very release it sits beside
    assert f"labsupport[run]=={ROOT['project']['version']}" in project["dependencies"]
    assert project["version"] == ROOT["project"]["version"]
    data = _package_data_files(GRADER, "grading", REPO / "grading")
    specs = sorted(p.name for p in (REPO / "grading" / "specs").iterdir())
    templates = sorted(p.name for p in (REPO / "grading" / "templates").iterdir())
    assert specs and templates
    assert {f"specs/{s}" for s in specs} | {f"templates/{t}" for t in templates} <= set(data), (
        "every spec and template must be package data, or an installed grader cannot find it")
    assert not any(f.startswith("hidden/") for f in data), "the private overlay must never ship"


# --- --distributions: build, install, run ----------------------------------------------------------------

SKIP = {".git", "build", "dist", "notebooks", "hidden", "__pycache__", ".pytest_cache", ".ruff_cache",
        ".ipynb_checkpoints"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    """A clean copy to build from (the in-tree build must not leave build/ or *.egg-info in the checkout,
    and the private overlay must not travel); virtual environments are left out wherever they are."""
    return {n for n in names if n in SKIP or n.endswith(".egg-info") or (Path(folder, n, "pyvenv.cfg")).exists()}


def _run(cmd: list, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def wheels(request, tmp_path_factory) -> dict[str, Path]:
    if not request.config.getoption("--distributions"):
        pytest.skip("builds the wheels: run with --distributions")
    tmp = tmp_path_factory.mktemp("dist")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_ignore)
    out = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out]
    _run(pip + [src], tmp)
    _run(pip + [src / "grading"], tmp)
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {"labsupport", "labgrade"}, found
    return found


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


@pytest.mark.distributions
def test_student_wheel_holds_no_grader(wheels):
    names = _names(wheels["labsupport"])
    assert "labsupport/check.py" in names and "labsupport/data/gpt2/vocab.bpe" in names
    assert not [n for n in names if n.startswith("grading/")], "the student wheel ships the grader"
    info = f"labsupport-{ROOT['project']['version']}.dist-info"
    assert {n.split("/")[0] for n in names} == {"labsupport", info}
    with zipfile.ZipFile(wheels["labsupport"]) as zf:
        meta, scripts = (zf.read(f"{info}/{f}").decode() for f in ("METADATA", "entry_points.txt"))
    assert "labgrade" not in scripts and "Provides-Extra: grading" not in meta


@pytest.mark.distributions
def test_grader_wheel_holds_its_specs_and_templates(wheels):
    names = set(_names(wheels["labgrade"]))
    want = {f"grading/{f}" for f in _package_data_files(GRADER, "grading", REPO / "grading")}
    assert want <= names and "grading/cli.py" in names and "grading/README.md" in names
    assert not [n for n in names if n.startswith(("labsupport/", "grading/hidden/", "grading/pyproject"))]


@pytest.fixture(scope="module")
def venv(wheels, tmp_path_factory) -> Path:
    """A fresh venv with both wheels installed non-editable. Their dependencies (torch, ...) come from this
    interpreter's site-packages, appended by a .pth after the venv's own: no download, no second torch, and
    the editable installs there stay inactive (their .pth files are not processed from an appended path)."""
    env = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", env], env.parent)
    python = env / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env).stdout.strip())
    here = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (purelib / "zz_dependencies.pth").write_text("\n".join(here) + "\n")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
          wheels["labsupport"], wheels["labgrade"]], env)
    return env


def _env(venv: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return dict(keep, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(venv))


@pytest.mark.distributions
def test_installed_grader_runs_without_a_checkout(venv, tmp_path):
    env, labgrade = _env(venv), venv / "bin" / "labgrade"
    where = _run([venv / "bin" / "python", "-c", "import grading, labsupport, grading.spec as s; "
                  "print(grading.__file__, labsupport.__file__, s.CHECKOUT, s.INSTALLED, s.SPECS_DIR.is_dir())"],
                 tmp_path, env).stdout.split()
    assert all(p.startswith(str(venv)) for p in where[:2]), where  # the wheels, not the checkout
    assert where[2:] == ["None", "True", "True"]
    assert "selftest" in _run([labgrade, "--help"], tmp_path, env).stdout

    # no checkout here and no ./notebooks: one line saying what to pass
    proc = _run([labgrade, "selftest", "--labs", "01"], tmp_path, env, check=False)
    assert proc.returncode == 2 and "--notebooks DIR" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

    # specs from the package, notebooks from --notebooks (relative paths too); the sandbox's view is built
    # from site-packages
    shutil.copytree(REPO / "notebooks", tmp_path / "nbs", ignore=shutil.ignore_patterns("student"))
    proc = _run([labgrade, "selftest", "--labs", "01", "--notebooks", "nbs", "--quiet"], tmp_path, env)
    assert "lab 01: max" in proc.stdout and proc.stdout.rstrip().endswith("ok"), proc.stdout  # exit 0: no FAIL
    proc = _run([labgrade, "check", "01.1", "nbs/01_tokenization.ipynb", "--notebooks", "nbs"], tmp_path, env)
    assert proc.stdout.startswith("PASS  exercise 01.1"), proc.stdout

    # a Gradescope bundle from the installed packages, which grades the solution with full marks
    _run([labgrade, "gradescope", "--lab", "01", "--out", "ag.zip", "--notebooks", "nbs"], tmp_path, env)
    ag = tmp_path / "autograder"
    with zipfile.ZipFile(tmp_path / "ag.zip") as zf:
        names = zf.namelist()
        zf.extractall(ag / "source")
    assert "course/grading/specs/01_tokenization.toml" in names and "course/labsupport/check.py" in names
    assert not [n for n in names if "pyproject" in n or ".dist-info" in n or n.endswith(".pyc")]
    requirements = (ag / "source" / "requirements.txt").read_text().split()
    assert "jinja2>=3.1" in requirements and "transformers>=5" in requirements
    assert not [r for r in requirements if r.startswith(("torch", "labsupport"))]
    (ag / "submission").mkdir()
    shutil.copy(REPO / "notebooks" / "01_tokenization.ipynb", ag / "submission")
    _run(["bash", ag / "source" / "run_autograder"], tmp_path,
         dict(env, AUTOGRADER_ROOT=str(ag), PYTHON=str(venv / "bin" / "python"), LABGRADE_RUN_AS=""))
    results = json.loads((ag / "results" / "results.json").read_text())
    assert results["tests"] and all(t["status"] == "passed" for t in results["tests"]), results
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0
