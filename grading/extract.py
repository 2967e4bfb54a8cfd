"""Find each exercise's code in a submitted notebook, whatever the student did to the cells.

Cells are read with nbformat and parsed with ``ast`` (IPython magics turned into Python first). An
exercise is found by the names it defines, not by cell position: the last top-level definition of a
name wins (as if the notebook ran top to bottom), so moved, duplicated and renamed cells and notebooks
all work. Only definitions are taken (def/class/import/assignment), never the student's calls, loops or
plots. Names the exercise code uses but does not define are looked up first in the SOLUTION notebook's
template cells (imports there become the shared prelude), then in the student's other cells.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat

from grading.release import has_solution, release_notebook, stub_source
from grading.spec import ExerciseSpec, LabSpec

BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "get_ipython", "display"}
DEFINING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
            ast.Assign, ast.AnnAssign, ast.AugAssign)
MAX_CLOSURE_ROUNDS = 20
PYTHON_CELL_MAGICS = {"%%time", "%%timeit", "%%capture", "%%prun"}


@dataclass(frozen=True)
class Stmt:
    cell: int  # 0-based index in the notebook (markdown cells counted)
    index: int  # position inside the cell
    lineno: int  # first line inside the cell (1-based)
    source: str
    binds: frozenset[str]
    free: frozenset[str]  # names used but not bound inside the statement


@dataclass
class Cell:
    index: int
    source: str  # Python after IPython's magic transforms
    stmts: list[Stmt] = field(default_factory=list)
    error: str | None = None  # "line L: message" when the cell does not parse


@dataclass(frozen=True)
class Chunk:
    """One statement the harness executes; `filename` shows up in the student's error messages."""

    source: str
    filename: str
    lineno: int
    student: bool


@dataclass
class Extracted:
    exercise: str
    chunks: list[Chunk]
    reason: str | None = None  # why the exercise cannot run at all (missing, syntax error)


@lru_cache(maxsize=1)
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager  # ~0.3 s of IPython: only for cells with magics

    return TransformerManager()


def _python(source: str) -> str:
    first, _, rest = source.partition("\n")
    if first.strip().split(" ")[0] in PYTHON_CELL_MAGICS:  # %%time etc. run the rest of the cell as Python
        source = "\n" + rest
    try:
        return _transformer().transform_cell(source)
    except ImportError:  # no IPython: cells with magics will not parse, the others are fine
        return source
    except Exception:  # a malformed magic: let ast report the syntax error
        return source


def _bound_names(node: ast.AST) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _free_names(node: ast.AST) -> set[str]:
    loads, local = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else local).add(n.id)
        elif isinstance(n, ast.arg):
            local.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            local |= _bound_names(n)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            local.add(n.name)
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        loads.add(node.target.id)  # `x += 1` needs an earlier x
        local.discard(node.target.id)
    return loads - local


def parse_cells(nb: nbformat.NotebookNode) -> list[Cell]:
    """Every code cell, parsed; defining top-level statements become `Stmt`s."""
    cells = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or not isinstance(cell.get("source"), str):
            continue
        parsed = Cell(i, _python(cell.source))
        try:
            tree = ast.parse(parsed.source)
        except SyntaxError as err:
            parsed.error = f"line {err.lineno}: {err.msg}"
            cells.append(parsed)
            continue
        lines = parsed.source.splitlines()
        for j, node in enumerate(tree.body):
            if not isinstance(node, DEFINING) or (isinstance(node, ast.AnnAssign) and node.value is None):
                continue
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            text = "\n".join(lines[start - 1: node.end_lineno])
            parsed.stmts.append(Stmt(i, j, start, text, frozenset(_bound_names(node)), frozenset(_free_names(node))))
        cells.append(parsed)
    return cells


def _defines_pattern(name: str) -> re.Pattern:
    n = re.escape(name)
    return re.compile(rf"^[ \t]*(?:async[ \t]+def|def|class)[ \t]+{n}\b|^{n}[ \t]*(?::[^=\n]*)?=(?!=)", re.M)


def last_definition(cells: list[Cell], name: str) -> Stmt | Cell | None:
    """The statement defining `name` last, or the unparsable cell that would define it last."""
    best: Stmt | Cell | None = None
    for cell in cells:
        if cell.error is not None and _defines_pattern(name).search(cell.source):
            best = cell
        for stmt in cell.stmts:
            if name in stmt.binds:
                best = stmt
    return best


class Template:
    """What the solution notebook contributes to grading: its imports (the prelude) and its template
    (non-exercise) definitions, plus the released student version (for locked cells, similarity)."""

    def __init__(self, spec: LabSpec):
        self.spec = spec
        self.solution = nbformat.read(spec.notebook, as_version=4)
        self.released = release_notebook(self.solution, spec.notebook.name)
        self.exercise_cells = {i for i, c in enumerate(self.solution.cells)
                               if c.cell_type == "code" and has_solution(c.source)}
        self.cells = [c for c in parse_cells(self.solution) if c.index not in self.exercise_cells]
        bad = [f"cell {c.index + 1} ({c.error})" for c in self.cells if c.error]
        if bad:
            raise ValueError(f"{spec.notebook}: solution notebook does not parse: {', '.join(bad)}")
        imports: list[str] = []
        self.index: dict[str, Stmt] = {}
        for cell in self.cells:
            for stmt in cell.stmts:
                if stmt.source.startswith(("import ", "from ")):
                    if stmt.source not in imports and not stmt.source.startswith("from __future__"):
                        imports.append(stmt.source)
                else:
                    self.index.update({name: stmt for name in stmt.binds})
        self.prelude = "\n".join(imports)
        setup_binds = set()
        for node in ast.parse(spec.setup or "").body:
            if isinstance(node, DEFINING):
                setup_binds |= _bound_names(node)
        self.base_names = {n for s in imports for n in _bound_names(ast.parse(s).body[0])} | setup_binds
        self.locked = {c.get("id"): (i, c.source) for i, c in enumerate(self.released.cells)
                       if c.get("id") and c.metadata.get("editable") is False}

    def roots(self, ex: ExerciseSpec) -> set[str]:
        return set(ex.defines) | {a for t in ex.tests for a in t.args}

    def extract(self, cells: list[Cell], ex: ExerciseSpec, extra_roots: set[str] = frozenset()) -> Extracted:
        """Chunks to execute for exercise `ex` of a parsed submission, or the reason it cannot run."""
        dep_names = {n for d in ex.depends for n in self.spec.exercise(d).defines}
        resolved = set(BUILTINS) | self.base_names | dep_names
        student: dict[tuple[int, int], Stmt] = {}
        template: dict[tuple[int, int], Stmt] = {}
        missing, broken = [], []
        for name in ex.defines:
            found = last_definition(cells, name)
            if found is None:
                missing.append(name)
            elif isinstance(found, Cell):
                broken.append(f"syntax error in cell {found.index + 1} ({found.error}), which defines `{name}`")
            else:
                student[(found.cell, found.index)] = found
            resolved.add(name)
        if broken:
            return Extracted(ex.id, [], broken[0])
        if len(missing) == len(ex.defines):
            names = ", ".join(f"`{n}`" for n in missing)
            return Extracted(ex.id, [], f"no cell defines {names} (deleted or renamed?)")
        todo = (self.roots(ex) | set(extra_roots)) - resolved
        for stmt in student.values():
            todo |= stmt.free
        for _ in range(MAX_CLOSURE_ROUNDS):
            todo -= resolved
            if not todo:
                break
            new: set[str] = set()
            for name in sorted(todo):
                resolved.add(name)
                if name in self.index:
                    stmt, pool = self.index[name], template
                elif isinstance(found := last_definition(cells, name), Stmt):
                    stmt, pool = found, student
                else:
                    continue  # left undefined: a NameError at run time names it
                if (stmt.cell, stmt.index) not in pool:
                    pool[(stmt.cell, stmt.index)] = stmt
                    resolved |= stmt.binds
                    new |= stmt.free
            todo = new
        chunks = [Chunk(s.source, f"<template cell {s.cell + 1}>", s.lineno, False)
                  for _, s in sorted(template.items())]
        chunks += [Chunk(s.source, f"<cell {s.cell + 1}>", s.lineno, True) for _, s in sorted(student.items())]
        return Extracted(ex.id, chunks)

    def solution_chunks(self, ex: ExerciseSpec) -> list[Chunk]:
        """The solution's code for `ex` (used for other exercises' dependencies)."""
        got = self.extract(parse_cells(self.solution), ex)
        if got.reason:
            raise ValueError(f"{self.spec.notebook}: exercise {ex.id} of the solution: {got.reason}")
        return got.chunks

    def locked_cell_edits(self, nb: nbformat.NotebookNode) -> list[str]:
        """Warnings for locked cells (checks, setup) that the student edited or deleted."""
        by_id = {c.get("id"): c for c in nb.get("cells", []) if c.get("id")}
        notes = []
        for cid, (pos, source) in self.locked.items():
            first = source.strip().splitlines()[-1][:50] if source.strip() else ""
            if cid not in by_id:
                notes.append(f"locked cell {pos + 1} ({first!r}) was deleted; ignored, grading runs its own tests")
            elif _stubbed(by_id[cid].get("source", "")) != source:
                notes.append(f"locked cell {pos + 1} ({first!r}) was edited; ignored, grading runs its own tests")
        return notes


def _stubbed(source: str) -> str:
    try:
        return stub_source(source)  # the solution's own check cells still hold their hidden tests
    except ValueError:
        return source


def read_submission(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    """(notebook, None) or (None, one-line reason) for a file that is not a readable notebook."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # NotJSONError, JSONDecodeError, UnicodeDecodeError, validation errors
        first = (str(err).strip().splitlines() or [""])[0][:160]
        return None, f"not a valid Jupyter notebook ({type(err).__name__}: {first})"
    if not isinstance(nb.get("cells"), list):
        return None, "not a valid Jupyter notebook (no list of cells)"
    return nb, None
