"""Self-test of the grading setup of every lab with a spec: the solution scores 100% (identically over
3 seeds), the released student notebook scores 0, and every mutant in the spec (a plausible bug written
as a source substitution: off-by-one, wrong axis, missing scale, ...) loses points. A mutant that keeps
full marks means the tests cannot see that bug."""

from __future__ import annotations

import ast
import copy
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading.extract import parse_cells
from grading.grade import Submission, grade
from grading.release import has_solution, release_notebook
from grading.spec import LabSpec, Mutant

SEEDS = (0, 1, 2)


def apply_mutant(nb: nbformat.NotebookNode, spec: LabSpec, mutant: Mutant) -> nbformat.NotebookNode:
    """A copy of solution `nb` with the mutant's substitution made in its exercise's solution cells."""
    nb = copy.deepcopy(nb)
    names = set(spec.exercise(mutant.exercise).defines)
    hits = 0
    for cell in parse_cells(nb):
        source = nb.cells[cell.index].source
        if has_solution(source) and any(names & s.binds for s in cell.stmts) and mutant.replace in source:
            hits += source.count(mutant.replace)
            nb.cells[cell.index].source = source.replace(mutant.replace, mutant.with_, mutant.count)
    if not hits:
        raise ValueError(f"{spec.path.name}: mutant {mutant.name!r}: {mutant.replace!r} is not in the solution "
                         f"cells of exercise {mutant.exercise}")
    return nb


def consistency(spec: LabSpec) -> list[str]:
    """Problems between the spec and its solution notebook (missing names, ungraded check calls)."""
    nb = nbformat.read(spec.notebook, as_version=4)
    cells = parse_cells(nb)
    defined = {n for c in cells for s in c.stmts for n in s.binds}
    problems = [f"exercise {ex.id}: the solution defines no `{n}`" for ex in spec.exercises for n in ex.defines
                if n not in defined]
    graded = {t.public for t in spec.tests if t.public}
    for cid in sorted(set(check_calls(nb)) - graded):
        problems.append(f"the notebook calls labsupport.check({cid!r}, ...) but the spec grades no such test")
    return problems


def check_calls(nb: nbformat.NotebookNode) -> dict[str, list[str]]:
    """{"01.2": ["train_bpe", ...]} for every `labsupport.check("01.2", train_bpe, ...)` in the notebook."""
    calls = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for m in re.finditer(r"labsupport\.check\((.*)\)", cell.source):
            try:
                args = ast.parse(f"f({m.group(1)})", mode="eval").body.args
            except SyntaxError:
                continue
            if args and isinstance(args[0], ast.Constant):
                calls[str(args[0].value)] = [a.id for a in args[1:] if isinstance(a, ast.Name)]
    return calls


def skeleton(notebook: Path) -> str:
    """A starting spec (TOML) for a solution notebook: one exercise per check call, public tests only."""
    nb = nbformat.read(notebook, as_version=4)
    lab = notebook.name[:2]
    lines = [f'lab = "{lab}"', f'title = "{notebook.stem[3:].replace("_", " ")}"', f'notebook = "{notebook.name}"',
             'profile = "smoke"', "", "[limits]", "test_seconds = 10", "notebook_seconds = 300", ""]
    for cid, args in check_calls(nb).items():
        arglist = ", ".join(f'"{a}"' for a in args)
        lines += ["[[exercise]]", f'id = "{cid}"', f"defines = [{arglist}]",
                  f'tests = [{{ name = "public", public = "{cid}", points = 1 }}]', ""]
    return "\n".join(lines)


@dataclass
class Outcome:
    lab: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _passed(rec: dict) -> dict[str, tuple[bool, str]]:
    return {t["key"]: (t["passed"], t["message"]) for ex in rec["exercises"] for t in ex["tests"]}


def selftest(spec: LabSpec, hidden: Path | None, jobs: int = 1, progress: bool = False) -> Outcome:
    res = Outcome(spec.lab)
    res.failures += consistency(spec)
    public_only = hidden is None or not (spec.hidden_dir(hidden) or Path()).is_dir()
    solution = nbformat.read(spec.notebook, as_version=4)
    notebooks = {f"solution_seed{s}": solution for s in SEEDS}
    notebooks["student"] = release_notebook(solution, spec.notebook.name)
    for m in spec.mutants:
        try:
            notebooks[f"mutant_{m.name}"] = apply_mutant(solution, spec, m)
        except ValueError as err:
            res.failures.append(str(err))
    with tempfile.TemporaryDirectory(prefix=f"labgrade-selftest-{spec.lab}-") as tmp:
        subs = []
        for key, nb in notebooks.items():
            nbformat.write(nb, Path(tmp) / f"{key}.ipynb")
            subs.append(Submission(key, Path(tmp) / f"{key}.ipynb"))
        seeds = {f"solution_seed{s}": s for s in SEEDS}
        # a mutant changes one exercise's code: it runs only the exercises whose extracted code differs from
        # the solution's and takes the solution's results (same seed) for the others
        reuse = {k: f"solution_seed{spec.seed}" for k in notebooks if k.startswith("mutant_")}
        recs = {r["student"]: r for r in grade(spec, subs, hidden=hidden, jobs=jobs, progress=progress,
                                               public_only=public_only, seeds=seeds, reuse=reuse)}
    first = recs["solution_seed0"]
    top = first["max_score"]
    note = " (public tests only: no hidden tests given)" if public_only and any(t.hidden for t in spec.tests) else ""
    res.lines.append(f"lab {spec.lab}: max {top:g} points{note}")
    for s in SEEDS:
        rec = recs[f"solution_seed{s}"]
        if rec["score"] != top:
            bad = [f"{k}: {m}" for k, (ok, m) in _passed(rec).items() if not ok]
            res.failures.append(f"solution (seed {s}) scores {rec['score']:g}/{top:g}: " + "; ".join(bad))
        elif _passed(rec) != _passed(first):
            res.failures.append(f"solution results differ between seed 0 and seed {s}")
    res.lines.append(f"  solution   {first['score']:g}/{top:g} with seeds {', '.join(map(str, SEEDS))}")
    student = recs["student"]
    res.lines.append(f"  student    {student['score']:g}/{top:g} (released notebook)")
    if student["score"] != 0:
        res.failures.append(f"the released student notebook scores {student['score']:g} (should be 0)")
    for m in spec.mutants:
        rec = recs.get(f"mutant_{m.name}")
        if rec is None:
            continue
        caught = [k for k, (ok, _) in _passed(rec).items() if not ok]
        res.lines.append(f"  mutant     {m.name:<32} {rec['score']:g}/{top:g}  caught by {', '.join(caught) or '-'}")
        if rec["score"] >= top:
            res.failures.append(f"mutant {m.name!r} keeps full marks: no test notices it")
    return res
