"""Release: solution notebooks -> student notebooks (``notebooks/student/``).

nbgrader-compatible markers: the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
``# YOUR CODE HERE`` + ``raise NotImplementedError`` at the BEGIN line's indentation (so a function keeps
its signature and docstring); ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` disappear. Outputs,
execution counts and widget state are cleared and check cells are locked. The result depends only on
the solution notebook, so re-running gives byte-identical files (tests/grading/test_release_drift.py).
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import nbformat

BEGIN_SOLUTION = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*BEGIN SOLUTION\b")
END_SOLUTION = re.compile(r"^[ \t]*#+[ \t]*END SOLUTION\b")
BEGIN_HIDDEN = re.compile(r"^[ \t]*#+[ \t]*BEGIN HIDDEN TESTS\b")
END_HIDDEN = re.compile(r"^[ \t]*#+[ \t]*END HIDDEN TESTS\b")
CHECK_CALL = re.compile(r"\blabsupport\.check\(")
STUB_CODE = "{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError"
STUB_MARKDOWN = "YOUR ANSWER HERE"
BADGE = re.compile(r"(/blob/[^/\s)]+/notebooks/)(?=\d\d_)")
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
# an answer in markdown: <details><summary>...</summary> BODY </details>; --strip-answers replaces BODY
DETAILS = re.compile(r"(<details>\s*<summary>.*?</summary>)(.*?)(</details>)", re.S | re.I)


def strip_answers(source: str) -> str:
    """Replace the body of every ``<details>`` answer by YOUR ANSWER HERE (for instructors who grade the
    questions); the summary line stays, so the student still sees where to answer."""
    return DETAILS.sub(lambda m: f"{m.group(1)}\n\n{STUB_MARKDOWN}\n\n{m.group(3)}", source)


class ReleaseError(ValueError):
    """A solution notebook's markers are malformed; the message names the cell."""


def has_solution(source: str) -> bool:
    return any(BEGIN_SOLUTION.match(line) for line in source.splitlines())


def _replace_blocks(source: str, begin: re.Pattern, end: re.Pattern, stub: str | None, where: str) -> str:
    """Replace every begin..end block (marker lines included) by `stub` (None: delete it)."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        if begin.match(line):
            if inside:
                raise ReleaseError(f"{where}: {begin.pattern!r} again before the matching END marker")
            inside = True
            if stub is not None:
                indent = m.group("indent") if (m := BEGIN_SOLUTION.match(line)) else ""
                out.extend(stub.format(indent=indent).splitlines())
        elif end.match(line):
            if not inside:
                raise ReleaseError(f"{where}: END marker without a BEGIN marker")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: BEGIN marker without an END marker")
    return "\n".join(out)


def stub_source(source: str, cell_type: str = "code", where: str = "cell") -> str:
    """The student version of one cell's source."""
    if cell_type == "markdown":
        return _replace_blocks(source, BEGIN_SOLUTION, END_SOLUTION, STUB_MARKDOWN, where)
    source = _replace_blocks(source, BEGIN_HIDDEN, END_HIDDEN, None, where)
    return _replace_blocks(source, BEGIN_SOLUTION, END_SOLUTION, STUB_CODE, where)


def _is_locked(source: str) -> bool:
    return bool(CHECK_CALL.search(source)) or any(BEGIN_HIDDEN.match(x) for x in source.splitlines())


def release_notebook(nb: nbformat.NotebookNode, name: str = "notebook",
                     answers: bool = True) -> nbformat.NotebookNode:
    """Return the student version of solution notebook `nb` (the input is not modified).

    `answers=False` also replaces the answers to the markdown questions (``<details>``) by YOUR ANSWER HERE.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    cells = []
    for i, cell in enumerate(nb.cells):
        where = f"{name} cell {i}"
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.get("id") is None and nb.nbformat_minor >= 5:  # stable ids keep re-releases identical
            cell["id"] = hashlib.sha1(f"{name}:{i}".encode()).hexdigest()[:8]
        original = cell.source
        if cell.cell_type == "markdown":
            cell.source = BADGE.sub(r"\1student/", stub_source(original, "markdown", where))
            if not answers:
                cell.source = strip_answers(cell.source)
        elif cell.cell_type == "code":
            cell.source = stub_source(original, "code", where)
            cell.outputs = []
            cell.execution_count = None
            if _is_locked(original):  # Jupyter honours these; the grader ignores edits anyway
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False
            if original.strip() and not cell.source.strip():
                continue  # the cell held hidden tests only
        cells.append(cell)
    nb.cells = cells
    return nb


def released_text(solution: str | Path, answers: bool = True) -> str:
    """The exact file content `release` writes for one solution notebook."""
    solution = Path(solution)
    nb = nbformat.read(solution, as_version=4)
    text = nbformat.writes(release_notebook(nb, solution.name, answers))
    return text if text.endswith("\n") else text + "\n"


def solution_notebooks(notebooks: Path, labs: list[str] | None = None) -> list[Path]:
    found = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if labs:
        wanted = {str(x).strip().zfill(2) for x in labs}
        missing = wanted - {p.name[:2] for p in found}
        if missing:
            raise ReleaseError(f"no solution notebook for lab {', '.join(sorted(missing))} in {notebooks}")
        found = [p for p in found if p.name[:2] in wanted]
    return found


def release(notebooks: Path, out: Path, labs: list[str] | None = None,
            answers: bool = True) -> list[tuple[Path, bool]]:
    """Write the student version of each solution notebook; return (path, changed) pairs.

    `answers=False` (``release --strip-answers``) also blanks the answers to the markdown questions.
    """
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for path in solution_notebooks(notebooks, labs):
        text = released_text(path, answers)
        target = out / path.name
        changed = not target.exists() or target.read_text() != text
        if changed:
            target.write_text(text)
        done.append((target, changed))
    return done
