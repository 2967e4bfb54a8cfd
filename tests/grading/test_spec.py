"""Grading specs: parsed into typed objects, malformed files rejected with a message naming the fix."""

from __future__ import annotations

import pytest

from conftest import FIXTURES, HIDDEN, NOTEBOOKS
from grading.spec import SpecError, find_specs, load_points_override, load_spec


def test_fixture_spec_parses(spec99):
    assert spec99.lab == "99" and spec99.profile == "smoke" and spec99.max_points == 9
    ex = spec99.exercise("99.2")
    assert ex.depends == ("99.1",) and ex.defines == ("attention",)
    hidden = ex.tests[1]
    assert hidden.kind == "hidden" and hidden.key == "99.2/single_query" and hidden.options == {"rtol": 1e-6}
    assert ex.tests[0].args == ("attention",)  # public checks get the exercise's names by default
    assert spec99.limits.test_seconds == 3 and spec99.checks.name == "checks_lab99.py"
    assert [m.name for m in spec99.mutants][:1] == ["softmax_wrong_axis"]


def test_fingerprint_follows_hidden_tests(spec99, tmp_path):
    with_hidden = spec99.fingerprint(HIDDEN / "99_synthetic")
    assert with_hidden != spec99.fingerprint(None)
    assert with_hidden == spec99.fingerprint(HIDDEN / "99_synthetic")


GOOD = '''lab = "98"
notebook = "x.ipynb"
[[exercise]]
id = "98.1"
defines = ["f"]
tests = [{ name = "public", public = "98.1", points = 1 }]
'''


@pytest.mark.parametrize("edit, msg", [
    (('points = 1', 'pts = 1'), "missing `points`"),
    (('public = "98.1"', 'public = "98.1", hidden = "t.py::f"'), "exactly one of"),
    (('public = "98.1"', 'hidden = "t.py"'), "should look like"),
    (('lab = "98"', 'lab = "98"\nprofile = "full"'), "not gradable"),
    (('id = "98.1"', 'id = "97.1"'), "should start with the lab number"),
    (('points = 1 }]', 'points = 1 }]\n[limits]\nseconds = 3'), "unknown [limits]"),
    (('defines = ["f"]', 'defines = ["f"]\ndepends = ["98.7"]'), "depends on unknown"),
    (('lab = "98"', 'lab = 98'), "`lab` should be str"),
    (('[[exercise]]', '[[exercise]'), "not valid TOML"),
])
def test_bad_specs_are_rejected_with_a_clear_message(tmp_path, edit, msg):
    path = tmp_path / "98_x.toml"
    path.write_text(GOOD.replace(*edit))
    with pytest.raises(SpecError, match=msg.replace("[", r"\[")):
        load_spec(path, tmp_path)


def test_find_specs_filters_labs(tmp_path):
    assert [s.lab for s in find_specs(FIXTURES / "specs", NOTEBOOKS, ["99"])] == ["99"]
    with pytest.raises(SpecError, match="no grading spec for lab 42"):
        find_specs(FIXTURES / "specs", NOTEBOOKS, ["42"])


def test_points_override(tmp_path):
    (tmp_path / "p.toml").write_text('"99.1/public" = 5\n"99.3/short_inputs" = 0.5\n')
    assert load_points_override(tmp_path / "p.toml") == {"99.1/public": 5.0, "99.3/short_inputs": 0.5}
    (tmp_path / "bad.json").write_text('{"public": "x"}')
    with pytest.raises(SpecError, match="bad: public"):
        load_points_override(tmp_path / "bad.json")


REAL_SPECS = find_specs()


@pytest.mark.parametrize("spec", REAL_SPECS, ids=[s.stem for s in REAL_SPECS])
def test_course_specs_match_their_notebooks(spec):
    """Cheap drift guard; `python -m grading selftest` does the full check (it grades)."""
    import nbformat

    from grading.selftest import apply_mutant, consistency

    assert consistency(spec) == []
    solution = nbformat.read(spec.notebook, as_version=4)
    for mutant in spec.mutants:
        apply_mutant(solution, spec, mutant)  # raises when the mutated text is gone from the solution


def test_notebooks_folder_resolution(tmp_path, monkeypatch):
    """--notebooks, else the checkout's notebooks/, else ./notebooks, else one line saying what to pass."""
    import grading.spec as spec_mod

    monkeypatch.chdir(tmp_path)
    assert spec_mod.notebooks_dir("nbs") == tmp_path / "nbs"  # absolute: the notebook reader runs in /
    checkout = spec_mod.CHECKOUT
    assert checkout == spec_mod.source_tree(spec_mod.PACKAGE) and not spec_mod.INSTALLED  # the tests run from one
    assert spec_mod.notebooks_dir() == checkout / "notebooks"
    monkeypatch.setattr(spec_mod, "CHECKOUT", None)  # an installed grader
    with pytest.raises(SpecError, match=r"pass --notebooks DIR"):
        spec_mod.notebooks_dir()
    (tmp_path / "notebooks").mkdir()
    assert spec_mod.notebooks_dir() == tmp_path / "notebooks"
    assert spec_mod.source_tree(tmp_path / "notebooks") is None  # no pyproject.toml + labsupport/ here
