"""Code-reading questions point into labsupport as "`code` (`labsupport/x.py`, line N)": the line must still hold
that code, so an edit that moves it fails here instead of sending students to the wrong line."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POINTER = re.compile(r"`([^`]+)` \(`(labsupport/[\w/]+\.py)`, lines? (\d+)(?:-(\d+))?\)")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def pointers(path: Path) -> list[tuple[str, str, int, int]]:
    cells = json.loads(path.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    text = re.sub(r"\s*\n\s*", " ", text)  # a pointer may wrap across lines
    return [(code, file, int(a), int(b or a)) for code, file, a, b in POINTER.findall(text)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_code_pointers_point_at_their_code(path):
    for code, file, first, last in pointers(path):
        lines = (ROOT / file).read_text().splitlines()[first - 1: last]
        assert any(code in line for line in lines), f"{path.name}: `{code}` is not at {file}:{first}-{last}"


def test_the_lab_gpt_questions_have_pointers():
    assert len(pointers(ROOT / "notebooks" / "04_text_generation.ipynb")) >= 5
    assert len(pointers(ROOT / "notebooks" / "07_gpt_classification.ipynb")) >= 2
