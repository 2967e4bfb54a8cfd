"""Hints teach, they never hand out the answer: no hint (either level) contains a line of the exercise's
reference solution, compared without whitespace and comments. Every gradable exercise has both levels."""

import json
import re
from pathlib import Path

import pytest

from labsupport.check import get_exercise

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
CHECK = re.compile(r"""labsupport\.check\(\s*["'](\d\d\.\d+)["']""")
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
MIN_CHARS = 12  # shorter normalised lines ("returnx", "else:") say nothing specific


def normalise(line: str) -> str:
    line = re.sub(r"\s+#.*$", "", line.rstrip()) if not line.lstrip().startswith("#") else ""
    return re.sub(r"\s+", "", line).replace('"', "'")


def solutions_by_exercise(path: Path) -> dict[str, list[str]]:
    """Exercise id -> the normalised lines of the solution blocks written before its check cell."""
    out, pending = {}, []
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code":
            continue
        for block in SOLUTION.findall(source):
            pending += [n for n in map(normalise, block.splitlines()) if len(n) >= MIN_CHARS]
        for ex_id in CHECK.findall(source):
            out.setdefault(ex_id, []).extend(pending)
            pending = []
    return out


CASES = [(p.stem, ex_id, lines) for p in NOTEBOOKS for ex_id, lines in solutions_by_exercise(p).items()]


def test_every_notebook_has_checked_solutions():
    assert len(CASES) >= 20


@pytest.mark.parametrize("stem,ex_id,lines", CASES, ids=[c[1] for c in CASES])
def test_hints_do_not_contain_the_solution(stem, ex_id, lines):
    ex = get_exercise(ex_id)
    for level, hint in (("hint", ex.hint), ("hint2", ex.hint2)):
        flat = re.sub(r"\s+", "", hint).replace('"', "'")
        leaked = [line for line in lines if line in flat]
        assert not leaked, f"{stem} {ex_id}: the {level} contains the solution line {leaked[0]!r}"


@pytest.mark.parametrize("stem,ex_id,lines", CASES, ids=[c[1] for c in CASES])
def test_hints_have_two_levels(stem, ex_id, lines):
    ex = get_exercise(ex_id)
    assert ex.hint.strip() and ex.hint2.strip(), f"{ex_id} needs a concept hint and an API hint (hint2)"
    assert ex.hint.strip() != ex.hint2.strip()


def test_the_check_catches_a_leak():
    lines = [normalise("    return logits / temperature  # scale")]
    assert lines == ["returnlogits/temperature"]
    assert lines[0] in re.sub(r"\s+", "", "try: return logits / temperature")
