"""The trusted half of every test: compare what a submission's drivers recorded (plain data, validated by
`labsupport.check.records`) with the reference, in the grading process that no student code runs in.

Public tests use the labsupport check's judge and its reference objects (the same as ``labsupport.check``
in a notebook). Hidden tests come from the private overlay: ``drive_NAME`` (sent to the sandbox without
its source) and an optional ``judge_NAME(got, want, **options)`` (never leaves this process); ``want`` is
``drive_NAME`` run here on the solution notebook's objects, and without a judge_ the default `compare` is
used. Options: the check's defaults, then the spec's, which always win; plus ``seed``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
import types
from pathlib import Path
from typing import Any

import labsupport
from grading.harness import compile_chunks
from labsupport.check import (
    EXERCISES,
    MAX_MESSAGE,
    Records,
    compare,
    driver_kwargs,
    judge,
    records,
    reference_records,
    run_driver,
    short,
)
from labsupport.runtime import seed_everything


def load_checks(source: str) -> types.ModuleType:
    """A spec's extra checks file, as module `labgrade_checks` (its references: "labgrade_checks:ref_x")."""
    module = types.ModuleType("labgrade_checks")
    sys.modules["labgrade_checks"] = module
    exec(compile(source, "<checks>", "exec"), module.__dict__)  # noqa: S102 -- the instructor's checks
    return module


def split_hidden(source: str) -> str:
    """The driver half of a hidden-test file: everything but its docstring, comments and judge_ functions."""
    tree = ast.parse(source)
    body = [n for n in tree.body
            if not (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("judge_"))
            and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str))]
    return ast.unparse(ast.Module(body=body, type_ignores=[]))


@functools.cache  # ~0.15 s of CPU to parse; aliases() asks for it 3 times per exercise, twice per grade()
def _labsupport_imports() -> dict[str, list[tuple[str, str]]]:
    """module -> [(local name, dotted path it binds)] for every absolute `import`/`from ... import` at any
    depth in labsupport's own source files, read with ast (importing every module would cost seconds).
    Read once per process (the files do not change while it grades); callers must not modify it."""
    root = Path(labsupport.__file__).parent
    found: dict[str, list[tuple[str, str]]] = {}
    for f in sorted(root.rglob("*.py")):
        mod = ".".join(("labsupport", *f.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        try:
            tree = ast.parse(f.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        pkg = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    base = ".".join([*pkg.split(".")[: len(pkg.split(".")) - node.level + 1], *filter(None, [base])])
                found.setdefault(mod, []).extend((a.asname or a.name, f"{base}.{a.name}") for a in node.names
                                                 if a.name != "*")
            elif isinstance(node, ast.Import):
                found.setdefault(mod, []).extend((a.asname, a.name) for a in node.names if a.asname)
    return found


def aliases(paths) -> list[str]:
    """`paths` ("module:attr.sub") plus every other path to the same object: the names labsupport's modules
    bind it to by import (from their source, so modules not loaded yet count), and the attributes of loaded
    labsupport modules that are the very same object (identity)."""
    dotted = {p.replace(":", "."): p for p in paths}
    imports = _labsupport_imports()
    for _ in range(5):  # re-exports of re-exports
        grew = False
        for mod, binds in imports.items():
            for local, target in binds:
                for d in list(dotted):
                    if d == target or d.startswith(target + "."):
                        alias = f"{mod}.{local}{d[len(target):]}"
                        if alias not in dotted:
                            dotted[alias] = f"{mod}:{local}{d[len(target):]}"
                            grew = True
        if not grew:
            break
    objects = {}
    for p in paths:
        mod, _, attr = p.partition(":")
        obj = sys.modules.get(mod)
        for part in attr.split(".") if obj is not None else []:
            obj = getattr(obj, part, None)
        if obj is not None and not isinstance(obj, (int, float, str, bool)):
            objects[id(obj)] = obj
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "labsupport" or name.startswith(("labsupport.", "labgrade_checks"))):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in objects and objects[id(value)] is value and f"{name}.{attr}" not in dotted:
                dotted[f"{name}.{attr}"] = f"{name}:{attr}"
    return sorted(set(dotted.values()))


class Judges:
    """Verdicts for one lab's tests; references are computed once per (test, seed)."""

    def __init__(self, spec, tests, template, hidden: dict[str, str], checks_source: str = ""):
        self.spec, self.tests, self.template = spec, {t.key: t for t in tests}, template
        if checks_source:
            load_checks(checks_source)
        try:
            importlib.import_module(f"labsupport.checks.lab{spec.lab}")
        except ModuleNotFoundError:
            pass
        self.hidden: dict[str, dict[str, Any]] = {}
        for fname, source in hidden.items():
            module = types.ModuleType(f"hidden_{fname}")
            exec(compile(source, f"<hidden {fname}>", "exec"), module.__dict__)  # noqa: S102 -- instructor's
            self.hidden[fname] = vars(module)
        for t in tests:
            if t.public and t.public not in EXERCISES:
                raise SystemExit(f"error: lab {spec.lab}: public check {t.public} is not registered")
            if t.hidden:
                fname, name = t.hidden.split("::")
                if not callable(self.hidden.get(fname, {}).get(f"drive_{name}")):
                    raise SystemExit(f"error: hidden test {t.hidden}: {fname} defines no `drive_{name}` "
                                     "(hidden tests are drive_NAME + judge_NAME pairs, see grading/README.md)")
        self._ns: dict[str, Any] | None = None
        self._want: dict[tuple[str, int], Records] = {}

    def _own(self) -> dict[str, list[str]]:
        """Exercise id -> the references as written: its tests' graded references plus the spec's `forbid`."""
        refs: dict[str, list[str]] = {}
        for t in self.tests.values():
            if t.public and EXERCISES[t.public].reference:
                refs.setdefault(t.exercise, []).extend(EXERCISES[t.public].reference)
        for ex in self.spec.exercises:
            refs.setdefault(ex.id, []).extend(ex.forbid)
        return refs

    def references(self) -> dict[str, list[str]]:
        """Exercise id -> what its code may not use ("module:attr" or "module:Class.method"): the graded
        references its tests compare with, the spec's `forbid`, and every other name under which labsupport
        re-exports one of them (`labsupport.lmtrain:generate` is `labsupport.generate:generate`); less the
        spec's `allow` (and its aliases)."""
        allow = {ex.id: set(aliases(ex.allow)) for ex in self.spec.exercises}
        return {k: sorted(set(aliases(v)) - allow.get(k, set())) for k, v in self._own().items()
                if set(aliases(v)) - allow.get(k, set())}

    def reference_files(self) -> list[str]:
        """Source files graded code must not read: every module defining a reference or a check of this lab
        (all loaded in the runner before any submission, so the sandbox never needs to import them)."""
        mods = {p.partition(":")[0] for paths in self._own().values() for p in paths}
        mods |= {m for m in sys.modules if m == "labsupport.checks" or m.startswith("labsupport.checks.")}
        files = []
        for m in sorted(mods):
            f = getattr(sys.modules.get(m), "__file__", None)
            if f and Path(f).is_file():
                files.append(str(Path(f).absolute()))
                files.append(str(Path(f).parent / "__pycache__"))
        return sorted(set(files))

    def _solution(self) -> dict[str, Any]:
        """Prelude + setup + every exercise of the solution notebook, for hidden tests' `want`."""
        if self._ns is None:
            ns: dict[str, Any] = {"__name__": "__main__"}
            exec(compile(self.template.prelude + "\n" + self.spec.setup, "<prelude>", "exec"), ns)  # noqa: S102
            seen = set()
            for ex in self.spec.exercises:
                for c in self.template.solution_chunks(ex):
                    if (c.filename, c.lineno) not in seen:
                        seen.add((c.filename, c.lineno))
                        exec(compile_chunks([vars(c)], lines=False)[0][1], ns)  # noqa: S102 -- the solution
            self._ns = ns
        return self._ns

    def options(self, key: str, seed: int) -> dict[str, Any]:
        t = self.tests[key]
        if t.public:
            return EXERCISES[t.public].run_options(t.options, seed)
        return {**t.options, "seed": seed}

    def want(self, key: str, seed: int) -> Records:
        if (key, seed) not in self._want:
            t, opts = self.tests[key], self.options(key, seed)
            if t.public:
                self._want[(key, seed)] = reference_records(EXERCISES[t.public], opts)
            else:
                fname, name = t.hidden.split("::")
                ns = self._solution()
                seed_everything(seed)
                self._want[(key, seed)] = records(run_driver(self.hidden[fname][f"drive_{name}"],
                                                             [ns[a] for a in t.args], opts))
        return self._want[(key, seed)]

    def verdict(self, key: str, seed: int, result: dict[str, Any]) -> tuple[bool, str]:
        """(passed, message) for one test's sandbox result: {"data": ...} or {"message": why it failed}."""
        if "data" not in result or result.get("data") is None:
            return False, str(result.get("message") or "no result reported")[:MAX_MESSAGE]
        try:
            got = records(result["data"])
        except (ValueError, TypeError, RecursionError) as err:
            return False, f"your results could not be read ({short(str(err), 120)})"
        t, opts = self.tests[key], self.options(key, seed)
        success = ""
        if t.public:
            fn, success = EXERCISES[t.public].judge, EXERCISES[t.public].success
        else:
            fname, name = t.hidden.split("::")
            fn = self.hidden[fname].get(f"judge_{name}") or compare
        try:
            return True, judge(fn, got, self.want(key, seed), opts, success)
        except AssertionError as err:
            return False, (str(err) or "wrong answer")[:MAX_MESSAGE]
        except Exception as err:  # a judge choking on odd (but well-formed) data is the answer's fault
            return False, f"your results could not be compared ({type(err).__name__}: {short(str(err), 200)})"


__all__ = ["Judges", "split_hidden", "driver_kwargs"]
