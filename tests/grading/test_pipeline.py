"""grade -> report -> similarity -> Gradescope, selftest and check, on a small synthetic class of lab 99."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import nbformat
import pytest

import grading.grade as grade_mod
from conftest import FIXTURES, HIDDEN, NOTEBOOKS, SOLUTION, edited
from grading.cli import main
from grading.grade import collect, grade
from grading.gradescope import bundle, results_json
from grading.release import released_text
from grading.report import load_results, per_test_stats, report, rescore
from grading.selftest import apply_mutant, selftest
from grading.similarity import similarity

RENAMED = """def softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)  # same code, other names and comments
    ex = np.exp(shifted)
    return ex / ex.sum(axis=axis, keepdims=True)"""
SPEC_ARGS = ["--specs", str(FIXTURES / "specs"), "--notebooks", str(NOTEBOOKS)]


def _mutant(spec, name):
    return apply_mutant(nbformat.read(SOLUTION, as_version=4), spec, next(m for m in spec.mutants if m.name == name))


@pytest.fixture(scope="module")
def klass(tmp_path_factory, spec99):
    root = tmp_path_factory.mktemp("class")
    subs, out = root / "subs", root / "out"
    (subs / "frank").mkdir(parents=True)
    (subs / "alice.ipynb").write_bytes(SOLUTION.read_bytes())
    (subs / "bob.ipynb").write_text(released_text(SOLUTION))
    nbformat.write(_mutant(spec99, "softmax_wrong_axis"), subs / "carol.ipynb")
    nbformat.write(edited({"cell-04": RENAMED}), subs / "dave.ipynb")
    nbformat.write(_mutant(spec99, "pairs_off_by_one"), subs / "erin.ipynb")
    (subs / "frank" / "Untitled.ipynb").write_bytes(SOLUTION.read_bytes())
    records = grade(spec99, collect(subs, "99"), out=out, hidden=HIDDEN, jobs=2, progress=False)
    return root, subs, out, {r["student"]: r for r in records}


def test_scores(klass):
    scores = {k: r["score"] for k, r in klass[3].items()}
    assert scores == {"alice": 9, "bob": 0, "carol": 6, "dave": 9, "erin": 7, "frank": 9}
    erin = {t["key"]: t for ex in klass[3]["erin"]["exercises"] for t in ex["tests"]}
    assert "got {(1, 2): 2, (2, 1): 1}" in erin["99.3/public"]["message"] and erin["99.3/public"]["hint"]
    assert erin["99.3/short_inputs"]["passed"] and erin["99.3/short_inputs"]["kind"] == "hidden"


def _fake_worker(calls):
    def run_worker(grader, jobs, n, masks, isolation, log):
        calls.extend(job["key"] for job in jobs)
        yield {"t": "ready", "isolation": {"mode": "fake"}, "checks": {}}
        for job in jobs:
            ok = {"passed": True, "message": "ok", "seconds": 0.0}
            yield {"t": "result", "key": job["key"], "error": None,
                   "exercises": {ex["id"]: {k: ok for k in ex["tests"]} for ex in job["exercises"]}}
    return run_worker


def test_regrading_skips_unchanged_submissions(klass, spec99, monkeypatch, tmp_path):
    root, subs, out, records = klass
    calls: list[str] = []
    monkeypatch.setattr(grade_mod, "run_worker", _fake_worker(calls))
    again = grade(spec99, collect(subs, "99"), out=out, hidden=HIDDEN, progress=False)
    assert calls == [] and {r["student"]: r["score"] for r in again} == {k: r["score"] for k, r in records.items()}
    copy = tmp_path / "subs"
    copy.mkdir()
    for name in ("alice.ipynb", "bob.ipynb"):
        (copy / name).write_bytes((subs / name).read_bytes())
    (tmp_path / "out").mkdir()
    for name in ("alice.json", "bob.json"):
        (tmp_path / "out" / name).write_bytes((out / name).read_bytes())
    (copy / "bob.ipynb").write_bytes(SOLUTION.read_bytes())  # bob resubmitted
    grade(spec99, collect(copy, "99"), out=tmp_path / "out", hidden=HIDDEN, progress=False)
    assert calls == ["bob"]
    grade(spec99, collect(copy, "99"), out=tmp_path / "out", hidden=HIDDEN, progress=False, force=True)
    assert calls == ["bob", "alice", "bob"]


def test_report_rescores_from_stored_results(klass, monkeypatch):
    root, subs, out, records = klass
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("report must not execute anything"))
    paths = report(out, root / "report", overrides={"99.1/public": 5}, void=["99.3/short_inputs"])
    import pandas as pd

    book = pd.read_csv(paths["gradebook"]).set_index("student")
    assert list(book.columns[:4]) == ["score", "max_score", "percent", "status"]
    assert "99.3/short_inputs" not in book.columns and "ex 99.2" in book.columns
    assert book.loc["alice", "score"] == 11 and book.loc["alice", "max_score"] == 11  # 9 - 1 voided + 3 extra
    assert book.loc["carol", "score"] == 6 - 1 and book.loc["erin", "99.3/public"] == 0
    html = (root / "report" / "feedback" / "erin.html").read_text()
    assert "short_inputs" in html and "voided" in html and "got {(1, 2): 2, (2, 1): 1}" in html
    assert "def test_" not in html and "hidden-test-source" not in html
    assert json.loads((root / "report" / "json" / "erin.json").read_text())["score"] == 9
    cls = paths["class_report"].read_text()
    assert "data:image/png;base64," in cls and "99.1/public" in cls
    with pytest.raises(SystemExit, match="unknown test key"):
        report(out, root / "r2", void=["99.9/nope"])


def test_suspect_tests_are_flagged():
    def rec(passed):
        tests = [{"key": k, "kind": "public", "passed": p, "max_points": 1.0, "message": ""}
                 for k, p in zip(("a/all", "a/none", "a/some"), passed)]
        return rescore({"status": "graded", "exercises": [{"id": "a", "tests": tests}]})
    stats = {s["key"]: s for s in per_test_stats([rec([True, False, True]), rec([True, False, False])])}
    assert "everybody passed" in stats["a/all"]["flag"] and "nobody passed" in stats["a/none"]["flag"]
    assert stats["a/some"]["flag"] == "" and stats["a/some"]["rate"] == 0.5


def test_similarity_sees_through_renaming(klass, spec99):
    df = similarity(spec99, collect(klass[1], "99"), top=50)
    pairs = {(a, b): s for a, b, s in zip(df.student_a, df.student_b, df.similarity)}
    assert pairs[("alice", "frank")] == 1.0 and pairs[("alice", "dave")] == 1.0
    assert pairs[("alice", "carol")] < 1.0
    assert not any("bob" in pair for pair in pairs)  # nothing beyond the template: not compared


def test_gradescope_bundle_and_autograder_run(klass, spec99, tmp_path):
    names = bundle(spec99, tmp_path / "ag.zip", HIDDEN)
    for required in ("setup.sh", "run_autograder", "requirements.txt", "lab/99_synthetic.toml", "lab/checks.py",
                     "hidden/99_synthetic/test_hidden.py", "course/grading/worker.py", "course/labsupport/check.py"):
        assert required in names
    assert bundle(spec99, tmp_path / "ag2.zip", HIDDEN) == names
    assert (tmp_path / "ag.zip").read_bytes() == (tmp_path / "ag2.zip").read_bytes()  # deterministic
    ag = tmp_path / "autograder"
    with zipfile.ZipFile(tmp_path / "ag.zip") as zf:
        zf.extractall(ag / "source")
    (ag / "submission").mkdir()
    nbformat.write(edited({"cell-04": "def softmax(x, axis=-1):\n    return x"}), ag / "submission" / "lab.ipynb")
    env = dict(os.environ, AUTOGRADER_ROOT=str(ag), PYTHON=sys.executable, LABGRADE_RUN_AS="")
    proc = subprocess.run(["bash", str(ag / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((ag / "results" / "results.json").read_text())
    assert res["score"] == 6 and len(res["tests"]) == 6
    first = res["tests"][0]
    assert first["name"] == "99.1 Stable softmax: public" and first["status"] == "failed" and "hint:" in first["output"]
    assert {t["visibility"] for t in res["tests"]} == {"visible", "after_published"}
    assert results_json(klass[3]["alice"], 1.0)["score"] == 9


def test_selftest_passes_on_the_fixture_lab(spec99, monkeypatch):
    ran = {}
    real = grade_mod.run_worker

    def spy(grader, jobs, *args):
        ran.update({job["key"]: [ex["id"] for ex in job["exercises"]] for job in jobs})
        ready, *results = real(grader, jobs, *args)
        return iter([ready, *reversed(results)])  # the mutants' results come before the solution's they reuse

    monkeypatch.setattr(grade_mod, "run_worker", spy)
    res = selftest(spec99, HIDDEN, jobs=2)
    assert res.failures == []
    text = "\n".join(res.lines)
    assert "solution   9/9 with seeds 0, 1, 2" in text and "student    0/9" in text
    # a mutant runs only its own exercise; its score counts the solution's results for the other two
    assert "softmax_unstable                 8/9  caught by 99.1/large_logits" in text
    assert "pairs_off_by_one                 7/9  caught by 99.3/public" in text
    assert ran["mutant_softmax_unstable"] == ["99.1"] and ran["mutant_pairs_off_by_one"] == ["99.3"]
    assert ran["solution_seed1"] == ran["student"] == ["99.1", "99.2", "99.3"]


def test_mutant_that_does_not_apply_is_an_error(spec99):
    from grading.spec import Mutant

    with pytest.raises(ValueError, match="is not in the solution cells of exercise 99.1"):
        apply_mutant(nbformat.read(SOLUTION, as_version=4), spec99, Mutant("x", "99.1", "no such text", ""))


def test_check_command_prints_fail_and_hint(klass, capsys):
    assert main(["check", "99.1", str(klass[1] / "carol.ipynb"), *SPEC_ARGS]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  exercise 99.1 (Stable softmax): softmax(x, axis=-1): expected [[")
    assert "hint: subtract the max along `axis`" in out


def test_load_results_refuses_empty_folder(tmp_path):
    with pytest.raises(SystemExit, match="no grading results"):
        load_results(tmp_path)
