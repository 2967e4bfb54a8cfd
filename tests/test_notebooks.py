"""Every solution notebook follows the course's notebook conventions (README.md: the labs, profiles and the
contributors' note on `python -m labsupport refresh`) and is committed clean."""

import re
from pathlib import Path

import nbformat
import pytest

from labsupport.nbtools import volatile_problems

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_labs():
    assert NOTEBOOKS, "no solution notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_conventions(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# Lab {path.name[:2]}")
    assert "colab-badge.svg" in first.source and f"notebooks/{path.name}" in first.source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0] and "%pip install" in code[0], "first code cell installs only in Colab"
    assert f'labsupport.setup("{path.stem}")' in code[1]
    src = "\n".join(code)
    assert "sys.path" not in src, "no sys.path hacks"
    assert not re.search(r"""["']cuda(:\d)?["']""", src), "no hard-coded device"
    assert src.count("### BEGIN SOLUTION") == src.count("### END SOLUTION") >= 1
    assert "labsupport.check(" in src and "labsupport.record(" in src
    assert any("<details>" in c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_is_followed_by_a_self_check(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        if "### BEGIN SOLUTION" in cell.source:
            later = [c.source for c in cells[i + 1 : i + 4]]
            assert any("labsupport.check(" in s for s in later), f"exercise in code cell {i} has no self-check"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_volatile_outputs(path):
    problems = volatile_problems(nbformat.read(path, as_version=4))
    assert not problems, f"run `python -m labsupport refresh {path.name[:2]}`: {problems}"
