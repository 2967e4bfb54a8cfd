"""Every lab notebook has a grading spec that matches it, and `python -m grading selftest` passes for every
spec: the solution scores 100% identically over 3 seeds, the released student notebook scores 0, and every
mutant loses points.

This runs the full selftest (all seeds, all mutants) with the public checks only: the hidden-tests overlay is
private and not in this repository. All labs together take about 50 s of CPU (a mutant runs only the
exercise it changes, see `grade(reuse=...)`), so CI needs no separate `python -m grading selftest` step."""

from __future__ import annotations

import nbformat
import pytest

from grading.release import solution_notebooks
from grading.selftest import check_calls, selftest
from grading.spec import find_specs, notebooks_dir

SPECS = find_specs()
IDS = [s.stem for s in SPECS]


def test_every_lab_notebook_has_a_spec():
    graded = {spec.notebook.name for spec in SPECS}
    missing = [nb.name for nb in solution_notebooks(notebooks_dir()) if nb.name not in graded]
    assert not missing, (f"no grading spec for {missing}: start one with `python -m grading spec-init NN` "
                         "and save it as grading/specs/NN_topic.toml")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_spec_grades_exactly_the_notebooks_checks(spec):
    """Each labsupport.check("NN.k", f, g) call in the notebook is one exercise whose public test gets f, g."""
    calls = check_calls(nbformat.read(spec.notebook, as_version=4))
    graded = {t.public: list(t.args) for t in spec.tests if t.public}
    assert graded == calls, f"{spec.path.name} grades {graded}; the notebook checks {calls}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_selftest_passes(spec):
    res = selftest(spec, hidden=None, jobs=2)
    assert not res.failures, "\n".join(res.lines + [f"FAIL {f}" for f in res.failures])
