"""Attacks on a real lab (01) by someone who read the grader: every way to reach the course's reference
implementation of learn_merges -- its source file, its bytecode cache, its twin in the same module, reloading
it, digging it out of memory -- scores 0 for that exercise, while an honest student in the same run keeps
full marks. The same for Lab 04's generation loop (tests/grading/hostile/lab04_generate.py), whose graded
reference only wraps the library's decoding loop, re-exported by several modules."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from conftest import load_module
from grading.extract import parse_cells
from grading.grade import collect, grade
from grading.spec import find_spec

ATTACKS = {
    "source_exec": ("import inspect, labsupport\n\ndef learn_merges(words, num_merges):\n    ns = {}\n"
                    "    exec(inspect.getsource(labsupport.bpe_train), ns)\n"
                    "    return ns['learn_merges'](words, num_merges)"),
    "read_file": ("import labsupport\n\ndef learn_merges(words, num_merges):\n    ns = {}\n"
                  "    exec(open(labsupport.bpe_train.__file__).read(), ns)\n"
                  "    return ns['learn_merges'](words, num_merges)"),
    "bytecode_cache": ("import glob, marshal, os, labsupport\n\ndef learn_merges(words, num_merges):\n"
                       "    d = os.path.dirname(labsupport.__file__) + '/__pycache__/'\n    ns = {}\n"
                       "    exec(marshal.loads(open(glob.glob(d + 'bpe_train*.pyc')[0], 'rb').read()[16:]), ns)\n"
                       "    return ns['learn_merges'](words, num_merges)"),
    "twin_by_name": ("import importlib\n\ndef learn_merges(words, num_merges):\n"
                     "    m = importlib.import_module('labsupport.' + 'bpe_train')\n"
                     "    return getattr(m, '_learn_merges_' + 'incremental')(words, num_merges)[0]"),
    "reload": ("import importlib, sys\n\ndef learn_merges(words, num_merges):\n"
               "    return importlib.reload(sys.modules['labsupport.' + 'bpe_train']).learn_merges(words, num_merges)"),
    "from_memory": ("import gc, types\n\ndef learn_merges(words, num_merges):\n    for o in gc.get_objects():\n"
                    "        if isinstance(o, types.FunctionType) and o.__module__ == 'labsupport.bpe_train' "
                    "and o.__code__.co_name == 'learn_merges':\n"
                    "            return o(words, num_merges)\n    return []"),
    "static_import": "from labsupport.bpe_train import learn_merges",
}


def write_attacks(spec, attacks: dict[str, str], binds: str, subs):
    """One submission per attack: the solution notebook with the solution cell that defines `binds` replaced by
    the attack's code; plus an honest classmate (the solution itself). Returns the folder."""
    solution = nbformat.read(spec.notebook, as_version=4)
    for name, code in attacks.items():
        nb = copy.deepcopy(solution)
        for cell in parse_cells(nb):
            if any(binds in s.binds for s in cell.stmts) and "BEGIN SOLUTION" in nb.cells[cell.index].source:
                nb.cells[cell.index].source = code
        nbformat.write(nb, subs / f"{name}.ipynb")
    (subs / "honest.ipynb").write_bytes(spec.notebook.read_bytes())
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    spec = find_spec("01")
    subs = write_attacks(spec, ATTACKS, "learn_merges", tmp_path_factory.mktemp("lab01"))
    return {r["student"]: r for r in grade(spec, collect(subs, "01"), progress=False, jobs=2)}


def _test(record, key="01.5/public"):
    return next(t for e in record["exercises"] for t in e["tests"] if t["key"] == key)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_reaching_the_reference_scores_zero(graded, attack):
    record = graded[attack]
    if record["isolation"].get("mode") != "namespaces" and attack in ("source_exec", "read_file", "bytecode_cache"):
        pytest.skip("reference source files are only hidden inside the sandbox's view")
    assert not _test(record)["passed"], _test(record)["message"]
    assert record["score"] == record["max_score"] - 2


def test_twins_and_imports_are_named(graded):
    assert "uses the course's reference implementation" in _test(graded["twin_by_name"])["message"]
    assert "(labsupport.bpe_train.learn_merges)" in _test(graded["static_import"])["message"]


def test_honest_student_in_the_same_run_keeps_full_marks(graded):
    assert graded["honest"]["score"] == graded["honest"]["max_score"] == 10


# ---------------------------------------------------------------------------------------------- Lab 04.4

LAB04 = load_module(Path(__file__).parent / "hostile" / "lab04_generate.py", "lab04_generate")


@pytest.fixture(scope="module")
def graded04(tmp_path_factory):
    """Only exercise 04.4 is graded (the others are not under attack), with an honest classmate in the run."""
    spec = find_spec("04")
    subs = write_attacks(spec, LAB04.ATTACKS, "generate", tmp_path_factory.mktemp("lab04"))
    results = grade(spec, collect(subs, "04"), progress=False, jobs=2, only={"04.4/public"})
    return {r["student"]: r for r in results}


@pytest.mark.parametrize("attack", sorted(LAB04.ATTACKS))
def test_the_librarys_generation_loop_scores_zero(graded04, attack):
    test = _test(graded04[attack], "04.4/public")
    assert not test["passed"] and "uses the course's reference implementation" in test["message"], test["message"]
    assert graded04[attack]["score"] == 0


def test_honest_generation_loop_keeps_full_marks(graded04):
    assert graded04["honest"]["score"] == graded04["honest"]["max_score"] == 4, _test(graded04["honest"], "04.4/public")
