"""Gradescope autograder bundle for one lab, and the code that runs inside it.

The zip holds ``setup.sh`` (installs CPU-only torch and the course's dependencies), ``run_autograder``
(grades /autograder/submission with this very grader and writes /autograder/results/results.json in
Gradescope's format), the course code (labsupport + grading, copied from where they are imported, a
checkout or an install), the lab's spec, solution notebook and hidden tests. The grader masks the hidden
tests and the solution from student code where the container allows namespaces; where it does not
(Docker's default seccomp profile), run_autograder makes them readable by root only and the exercise
processes run as `nobody` (LABGRADE_RUN_AS).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

from grading.spec import PACKAGE, LabSpec

FIXED_TIME = (2024, 1, 1, 0, 0, 0)  # identical bundles for identical inputs
SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once while building the autograder image.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q --upgrade pip
/autograder/venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install -q -r /autograder/source/requirements.txt
"""
RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; AUTOGRADER_ROOT and PYTHON let you try it locally.
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{PYTHON:-$ROOT/venv/bin/python}}"
SRC="$ROOT/source"
chmod -R go-rwx "$SRC/hidden" "$SRC/lab" 2>/dev/null || true
mkdir -p "$ROOT/results"
cd "$SRC/course"
export LABGRADE_RUN_AS="${{LABGRADE_RUN_AS:-nobody}}"
# one container per submission: sandbox inside it where the kernel allows, else run as nobody (results say so)
export LABGRADE_ISOLATION="${{LABGRADE_ISOLATION:-container}}"
exec "$PYTHON" -m grading gradescope-run --lab {lab} --specs "$SRC/lab" --notebooks "$SRC/lab" \\
    --hidden "$SRC/hidden" --submission "$ROOT/submission" --results "$ROOT/results/results.json"
"""


def _base_requires(dist: str) -> list[str]:
    """The installed distribution's own dependencies (no extras), from its metadata."""
    try:
        reqs = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"error: {dist} is not installed; install the course and the grader first "
                         '(pip install -e ".[dev]" -e ./grading, or pip install . ./grading)') from None
    return [r for r in reqs if "extra ==" not in r.partition(";")[2]]


def _requirements() -> str:
    """labsupport's dependencies (CPU torch comes first, from setup.sh) and the grader's own; the two
    packages themselves ship as source in course/."""
    deps = [d for d in _base_requires("labsupport") if not d.startswith("torch")]
    deps += [d for d in _base_requires("labgrade") if not d.startswith("labsupport")]
    return "\n".join(deps) + "\n"


PACKAGING = {"__pycache__", "build", "dist", "hidden", "pyproject.toml"}  # never in the bundle (hidden: the overlay)


def _course_files() -> list[tuple[Path, str]]:
    """labsupport/ and grading/ from where they are imported (a checkout or site-packages)."""
    found = importlib.util.find_spec("labsupport")
    files = []
    for name, root in (("labsupport", Path(found.origin).parent), ("grading", PACKAGE)):
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root)
            if (p.is_file() and p.suffix != ".pyc" and not PACKAGING & set(rel.parts)
                    and not any(part.endswith(".egg-info") for part in rel.parts)):
                files.append((p, f"course/{name}/{rel.as_posix()}"))
    return files


def bundle(spec: LabSpec, out: Path, hidden: Path | None) -> list[str]:
    """Write the autograder zip; return the names inside it."""
    spec_text = spec.path.read_text()
    entries: list[tuple[str, bytes, int]] = [
        ("setup.sh", SETUP_SH.encode(), 0o755),
        ("run_autograder", RUN_AUTOGRADER.format(lab=spec.lab).encode(), 0o755),
        ("requirements.txt", _requirements().encode(), 0o644),
        (f"lab/{spec.notebook.name}", spec.notebook.read_bytes(), 0o644),
    ]
    if spec.checks:
        spec_text = re.sub(r"(?m)^checks\s*=.*$", 'checks = "checks.py"', spec_text)
        entries.append(("lab/checks.py", spec.checks.read_bytes(), 0o644))
    entries.append((f"lab/{spec.path.name}", spec_text.encode(), 0o644))
    folder = spec.hidden_dir(hidden)
    if any(t.hidden for t in spec.tests):
        if folder is None or not folder.is_dir():
            raise SystemExit(f"error: lab {spec.lab} has hidden tests; pass --hidden DIR (holding {spec.stem}/)")
        entries += [(f"hidden/{spec.stem}/{p.name}", p.read_bytes(), 0o644) for p in sorted(folder.glob("*.py"))]
    entries += [(name, p.read_bytes(), 0o644) for p, name in _course_files()]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in sorted(entries):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return [name for name, _, _ in sorted(entries)]


def results_json(record: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Gradescope's results.json for one graded submission."""
    tests = []
    for ex in record["exercises"]:
        for t in ex["tests"]:
            output = t["message"] + (f"\nhint: {t['hint']}" if t.get("hint") else "")
            tests.append({
                "name": f"{ex['id']} {ex['title']}: {t['name']}", "score": t["points"], "max_score": t["max_points"],
                "status": "passed" if t["passed"] else "failed", "output": output,
                "visibility": "visible" if t["kind"] == "public" else "after_published",
            })
    lines = [f"Lab {record['lab']}: {record['score']:g} / {record['max_score']:g} points."]
    if record["status"] != "graded":
        lines.append(f"Could not grade your notebook: {record['reason']}")
    lines += record["warnings"]
    return {"score": record["score"], "execution_time": round(seconds, 1), "output": "\n".join(lines),
            "stdout_visibility": "hidden", "tests": tests}


def run(spec: LabSpec, submission: Path, results: Path, hidden: Path | None) -> dict[str, Any]:
    """Inside the autograder: grade the one submission and write results.json."""
    from grading.grade import (  # here: grading.grade loads labsupport and torch (~1.6 s); bundling doesn't
        folder_submission,
        grade,
    )

    start = time.monotonic()
    sub = folder_submission(submission, spec.lab, key="submission")  # the folder holds one student's files
    record = grade(spec, [sub], hidden=hidden, progress=False, mask=[submission, results.parent])[0]
    out = results_json(record, time.monotonic() - start)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(out, indent=2))
    return out
