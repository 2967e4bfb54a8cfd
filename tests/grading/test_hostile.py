"""Hostile submissions (tests/grading/hostile/cases.py) each get a correct score and a clear reason, never
hang, never see the hidden tests, and never change another student's results."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import nbformat
import pytest

from conftest import HIDDEN, SOLUTION, edited, load_module, small_spec
from grading.grade import collect, grade
from grading.release import released_text

REPO = Path(__file__).resolve().parents[2]
cases = load_module(Path(__file__).parent / "hostile" / "cases.py", "hostile_cases")
SECRET = "hidden-test-source-must-never-leak"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    fill = {"@HIDDEN@": str(HIDDEN.resolve()), "@OUT@": str(out), "@REPO@": str(REPO)}

    def filled(source):
        for key, value in fill.items():
            source = source.replace(key, value) if isinstance(source, str) else source
        return source

    for name, edits in cases.CASES.items():
        filled_edits = {k: filled(v) for k, v in edits.items()}
        nbformat.write(edited(filled_edits), subs / f"{name}.ipynb")
    (subs / "good.ipynb").write_bytes(SOLUTION.read_bytes())
    (subs / "folder_student").mkdir()
    (subs / "folder_student" / "my lab copy (1).ipynb").write_bytes(SOLUTION.read_bytes())
    (subs / "unimplemented.ipynb").write_text(released_text(SOLUTION))
    (subs / "not_json.ipynb").write_text('{"cells": [oops')
    # limits with headroom: the suite shares 2 cores with other xdist workers (one unexplained miss seen at 2 s)
    spec = small_spec(root, test_seconds=3, notebook_seconds=90)
    tag = uuid.uuid4().hex
    os.environ["LABGRADE_TEST_TAG"] = tag  # inherited by every grading process: lets us look for leftovers
    try:
        results = grade(spec, collect(subs, spec.lab), out=out, hidden=HIDDEN, jobs=2, progress=False)
    finally:
        os.environ.pop("LABGRADE_TEST_TAG")
    return {r["student"]: r for r in results}, out, tag


def _tests(record):
    return {t["key"]: t for ex in record["exercises"] for t in ex["tests"]}


def _isolated(record) -> bool:
    return record["isolation"].get("mode") == "namespaces"


@pytest.mark.parametrize("case", sorted(cases.EXPECTED))
def test_hostile_case_scores_and_reasons(graded, case):
    record = graded[0][case]
    if case in ("network_call", "read_hidden_tests", "write_results") and not _isolated(record):
        pytest.skip(f"no namespace isolation here: {record['isolation']['network']}")
    score, failing = cases.EXPECTED[case]
    tests = _tests(record)
    assert record["status"] == "graded"
    for key, test in tests.items():
        if key in failing:
            assert not test["passed"] and failing[key] in test["message"], (key, test["message"])
        else:
            assert test["passed"], (key, test["message"])
    assert record["score"] == score and record["max_score"] == 9


def test_good_students_unaffected(graded):
    results, out, _ = graded
    for student in ("good", "folder_student"):
        assert results[student]["score"] == 9, _tests(results[student])
        on_disk = json.loads((out / f"{student}.json").read_text())
        assert on_disk["score"] == 9 and on_disk["sha256"] == results[student]["sha256"]


def test_unimplemented_and_invalid(graded):
    results = graded[0]
    assert results["unimplemented"]["score"] == 0
    assert all("not implemented yet" in t["message"] for t in _tests(results["unimplemented"]).values())
    bad = results["not_json"]
    assert bad["status"] == "invalid" and bad["score"] == 0 and "not a valid Jupyter notebook" in bad["reason"]


def test_locked_cell_edits_are_reported_not_rewarded(graded):
    warnings = " ".join(graded[0]["edited_locked_cells"]["warnings"])
    assert "locked cell 6" in warnings and "was edited" in warnings and "locked cell 9" in warnings


def test_hidden_tests_never_leak(graded):
    results = graded[0]
    dump = json.dumps(results)
    assert SECRET not in dump and "def test_softmax_large_logits" not in dump
    if _isolated(results["read_hidden_tests"]):  # listing and reading are refused; the source is nowhere
        for key in ("99.1/public", "99.1/large_logits"):
            leak = _tests(results["read_hidden_tests"])[key]["message"]
            assert leak.startswith("LEAK FileNotFoundError | FileNotFoundError | FileNotFoundError | "), leak
        assert "def " not in leak and "drive_" not in leak, leak


def test_results_and_repo_untouched(graded):
    results, out, _ = graded
    names = {p.name for p in out.iterdir()}
    assert names == {f"{k}.json" for k in results} | {"worker.log", "students.json"}
    assert "999" not in (REPO / "grading" / "__init__.py").read_text()
    assert "999" not in (HIDDEN / "99_synthetic" / "test_hidden.py").read_text()
    assert not Path("/tmp/labgrade-escape.txt").exists()


def test_isolation_is_stated(graded):
    iso = graded[0]["good"]["isolation"]
    assert set(iso) == {"mode", "network", "filesystem", "processes", "memory"}
    assert ("NOT isolated" in iso["network"]) == (iso["mode"] == "none")


def test_no_process_left_behind(graded):
    tag = graded[2].encode()
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if tag in Path(f"/proc/{pid}/environ").read_bytes():
                left.append(pid)
        except OSError:
            continue
    assert not left, f"grading processes still running: {left}"
