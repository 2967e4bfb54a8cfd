"""Release: solutions stubbed at the right indentation, hidden tests gone, outputs cleared, deterministic."""

from __future__ import annotations

import nbformat
import pytest

from conftest import SOLUTION
from grading.release import ReleaseError, release, release_notebook, released_text, stub_source


def test_stub_inside_function_keeps_signature_and_indentation():
    src = "def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION"
    assert stub_source(src) == 'def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError'


def test_stub_nested_and_top_level_blocks_and_code_after_the_block():
    src = ("class A:\n    def g(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n"
           "### BEGIN SOLUTION\nK = 3\n### END SOLUTION\nprint(K)")
    want = ("class A:\n    def g(self):\n        # YOUR CODE HERE\n        raise NotImplementedError\n"
            "# YOUR CODE HERE\nraise NotImplementedError\nprint(K)")
    assert stub_source(src) == want


def test_hidden_tests_removed_and_markdown_answers_replaced():
    assert stub_source("check(f)\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS") == "check(f)"
    assert stub_source("Q?\n### BEGIN SOLUTION\nA!\n### END SOLUTION", "markdown") == "Q?\nYOUR ANSWER HERE"


@pytest.mark.parametrize("src, msg", [
    ("### BEGIN SOLUTION\nx = 1", "without an END"),
    ("x = 1\n### END SOLUTION", "END marker without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "again before"),
])
def test_unbalanced_markers_name_the_cell(src, msg):
    with pytest.raises(ReleaseError, match=msg):
        stub_source(src, where="nb cell 3")


def test_release_notebook_clears_volatile_state_and_locks_checks():
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.metadata["widgets"] = {"state": {}}
    student = release_notebook(nb, SOLUTION.name)
    assert "widgets" not in student.metadata and "widgets" in nb.metadata  # input untouched
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "np.exp" not in text
    assert "count_pairs([4, 4, 4])" not in text  # a cell holding only hidden tests is dropped
    assert len(student.cells) == len(nb.cells) - 1
    checks = [c for c in code if "labsupport.check(" in c.source]
    assert len(checks) == 3 and all(c.metadata["editable"] is False for c in checks)
    assert "notebooks/student/99_synthetic.ipynb" in student.cells[0].source
    assert "Because exp(1000)" not in text and "YOUR ANSWER HERE" in text


def test_release_is_byte_identical_on_rerun(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / SOLUTION.name).write_bytes(SOLUTION.read_bytes())
    first = release(tmp_path / "nb", tmp_path / "out")
    data = (tmp_path / "out" / SOLUTION.name).read_bytes()
    second = release(tmp_path / "nb", tmp_path / "out")
    assert first[0][1] and not second[0][1]
    assert (tmp_path / "out" / SOLUTION.name).read_bytes() == data == released_text(SOLUTION).encode()
    nbformat.validate(nbformat.reads(data.decode(), as_version=4))


def test_strip_answers_blanks_the_details_answers_only():
    from grading.release import STUB_MARKDOWN, strip_answers

    md = ("**Question.** Why?\n\n<details><summary>Answer</summary>\n\nBecause of $x$.\n</details>\n\n"
          "More text.\n<details><summary>Answers</summary>\n1. one\n2. two\n</details>")
    out = strip_answers(md)
    assert "Because" not in out and "1. one" not in out
    assert out.count(STUB_MARKDOWN) == 2 and out.count("<summary>") == 2 and "More text." in out
    assert strip_answers("no questions here") == "no questions here"


def test_release_strip_answers_leaves_the_default_release_alone(tmp_path):
    from pathlib import Path

    from grading.release import release

    notebooks = Path(__file__).resolve().parents[2] / "notebooks"
    [(stripped, _)] = release(notebooks, tmp_path / "graded", labs=["04"], answers=False)
    [(default, _)] = release(notebooks, tmp_path / "self", labs=["04"])
    assert "YOUR ANSWER HERE" in stripped.read_text() and "GPT-2's recipe" not in stripped.read_text()
    assert "GPT-2's recipe" in default.read_text()
