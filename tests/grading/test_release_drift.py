"""The committed student notebooks are exactly what `python -m grading release` makes of the solution
notebooks. On failure run `python -m grading release` and commit notebooks/student/."""

from __future__ import annotations

from pathlib import Path

import pytest

from grading.release import released_text

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SOLUTIONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_student_notebook_matches_a_fresh_release(solution):
    student = NOTEBOOKS / "student" / solution.name
    assert student.exists(), f"{student} is missing: run `python -m grading release`"
    assert student.read_text() == released_text(solution), (
        f"{student} drifted from {solution.name}: run `python -m grading release` and commit it")


def test_no_orphan_student_notebooks():
    orphans = {p.name for p in (NOTEBOOKS / "student").glob("*.ipynb")} - {p.name for p in SOLUTIONS}
    assert not orphans, f"student notebooks without a solution notebook: {sorted(orphans)}"
