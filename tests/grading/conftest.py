"""Shared fixtures for the grader's tests: the synthetic lab 99 and helpers that build submissions."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import nbformat
import pytest

from grading.spec import LabSpec, load_spec

FIXTURES = Path(__file__).parent / "fixtures"
HIDDEN = FIXTURES / "hidden"
NOTEBOOKS = FIXTURES / "notebooks"
SOLUTION = NOTEBOOKS / "99_synthetic.ipynb"

# nbval (pytest --nbval-lax) must not try to execute the fixture or hostile notebooks
collect_ignore_glob = ["fixtures/*", "hostile/*"]


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_spec(folder: Path, **limits) -> LabSpec:
    """The lab-99 spec with its own (small) limits, written into `folder`."""
    text = (FIXTURES / "specs" / "99_synthetic.toml").read_text()
    text = text.replace('checks = "../checks_lab99.py"', f'checks = {str(FIXTURES / "checks_lab99.py")!r}')
    for key, value in limits.items():
        text = text.replace(f"\n{key} = ", f"\n{key} = {value}\n_old_{key} = ", 1)
    path = folder / "99_synthetic.toml"
    path.write_text(text.replace("\n_old_", "\n# old "))
    return load_spec(path, NOTEBOOKS)


def edited(edits: dict[str, str | list[str] | None]) -> nbformat.NotebookNode:
    """The solution notebook with cells replaced (str), duplicated (list) or deleted (None) by id."""
    nb = nbformat.read(SOLUTION, as_version=4)
    cells = []
    for cell in nb.cells:
        new = edits.get(cell.get("id"), cell.source)
        for k, source in enumerate([new] if isinstance(new, str) else new or []):
            c = copy.deepcopy(cell)
            c.source, c["id"] = source, cell["id"] if k == 0 else f"{cell['id']}-copy{k}"
            cells.append(c)
    nb.cells = cells
    return nb


@pytest.fixture(scope="session")
def spec99() -> LabSpec:
    return load_spec(FIXTURES / "specs" / "99_synthetic.toml", NOTEBOOKS)
