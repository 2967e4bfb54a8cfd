"""Finding a student's exercise code by the names it defines, whatever happened to the cells."""

from __future__ import annotations

import nbformat
import pytest

from conftest import edited
from grading.extract import Template, parse_cells, read_submission


@pytest.fixture(scope="module")
def template(spec99):
    return Template(spec99)


def _chunks(template, spec, nb, ex_id):
    got = template.extract(parse_cells(nb), spec.exercise(ex_id))
    return got, [(c.filename, c.source) for c in got.chunks]


def test_prelude_takes_imports_from_the_solution_template(template):
    assert "import numpy as np" in template.prelude and "import labsupport" in template.prelude
    assert "labsupport.setup" not in template.prelude and "%pip" not in template.prelude
    assert template.base_names >= {"np", "labsupport"}


def test_solution_extraction_takes_definitions_only(template, spec99):
    got, chunks = _chunks(template, spec99, template.solution, "99.3")
    assert got.reason is None
    # the given helper comes from the SOLUTION template; the exercise from the (here: solution) notebook
    assert chunks[0] == ("<template cell 11>", "def as_list(tokens):\n    return [int(t) for t in tokens]")
    assert chunks[1][0] == "<cell 12>" and chunks[1][1].startswith("def count_pairs(tokens):")
    assert all("print(" not in src and "labsupport.check" not in src for _, src in chunks)


def test_last_definition_wins_and_moved_cells_are_found(template, spec99):
    nb = edited({"cell-04": ["def softmax(x, axis=-1):\n    return 1", "def softmax(x, axis=-1):\n    return 2"]})
    nb.cells.append(nb.cells.pop(4))  # move the first copy to the very end: it is now the last definition
    got, chunks = _chunks(template, spec99, nb, "99.1")
    assert len(chunks) == 1 and chunks[0][1].endswith("return 1")


def test_student_helpers_in_other_cells_are_pulled_in(template, spec99):
    nb = edited({"cell-11": "def count_pairs(tokens):\n    return helper(tokens)",
                 "cell-13": "import collections\n\ndef helper(t):\n    return collections.Counter(zip(t, t[1:]))\n"
                            "helper([1, 2])  # a call: never executed"})
    got, chunks = _chunks(template, spec99, nb, "99.3")
    sources = [src for _, src in chunks]
    assert sources == ["def count_pairs(tokens):\n    return helper(tokens)", "import collections",
                       "def helper(t):\n    return collections.Counter(zip(t, t[1:]))"]


def test_missing_and_syntax_error_reasons(template, spec99):
    got, _ = _chunks(template, spec99, edited({"cell-04": None}), "99.1")
    assert got.reason == "no cell defines `softmax` (deleted or renamed?)"
    got, _ = _chunks(template, spec99, edited({"cell-07": "def attention(q, k, v):\n    return q @@ k"}), "99.2")
    assert got.reason.startswith("syntax error in cell 8 (line 2:")
    # a broken early draft does not matter when a later cell defines the name again
    nb = edited({"cell-07": ["def attention(q, k, v) oops", "def attention(q, k, v):\n    return q"]})
    assert _chunks(template, spec99, nb, "99.2")[0].reason is None


def test_magics_do_not_break_parsing(template, spec99):
    nb = edited({"cell-04": "%%time\ndef softmax(x, axis=-1):\n    return x", "cell-05": "!ls\n%timeit softmax(1)"})
    got, chunks = _chunks(template, spec99, nb, "99.1")
    assert got.reason is None and chunks[0][1] == "def softmax(x, axis=-1):\n    return x"


def test_locked_cell_edits(template):
    nb = edited({"cell-05": "print('PASS')", "cell-08": None})
    notes = template.locked_cell_edits(nb)
    assert any("locked cell 6" in n and "edited" in n for n in notes)
    assert any("locked cell 9" in n and "deleted" in n for n in notes)
    assert template.locked_cell_edits(nbformat.read(template.spec.notebook, as_version=4)) == []


def test_read_submission_reports_invalid_files(tmp_path):
    (tmp_path / "a.ipynb").write_text("not json")
    (tmp_path / "b.ipynb").write_bytes(b"\xff\xfe\x00garbage")
    for name in ("a.ipynb", "b.ipynb"):
        nb, reason = read_submission(tmp_path / name)
        assert nb is None and reason.startswith("not a valid Jupyter notebook")
