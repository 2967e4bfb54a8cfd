"""The inside of one exercise process: execute the student's extracted code in a fresh namespace, run
the exercise's tests against it, and report each step as one JSON line on a pipe.

Everything trusted (the lab's prelude, public checks, hidden tests, the tamper snapshot) is loaded once
into `Context` by the grading worker before it forks; the student's code only ever runs in a forked
child, in its own namespace dict, so a test's source never lands in the student's globals. Hidden test
modules are compiled under the name "<hidden>" so no traceback or linecache lookup can print them.
"""

from __future__ import annotations

import ast
import errno
import inspect
import json
import linecache
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WATCHED_MODULES = ("builtins", "sys", "os", "math", "random", "json", "inspect", "traceback", "numpy",
                   "numpy.testing", "numpy.linalg", "torch", "torch.nn", "torch.nn.functional", "torch.testing")
MAX_MESSAGE = 1500


@dataclass
class Context:
    base: dict[str, Any]  # prelude + spec setup namespace
    deps: dict[str, dict[str, Any]]  # exercise id -> solution objects it depends on
    public: dict[str, Callable[..., Any]]  # check id -> labsupport check function
    hidden: dict[str, Callable[..., Any]]  # "file.py::func" -> hidden test function
    tests: dict[str, dict[str, Any]]  # "01.2/public" -> the test's spec (as a dict)
    seed_everything: Callable[[int], None]
    memory_mb: int = 0
    output_mb: int = 0
    info: dict[str, dict[str, str]] = field(default_factory=dict)  # check id -> title, hint
    snapshot: list[tuple[Any, str, Any, Any]] = field(default_factory=list)

    def take_snapshot(self, extra_modules: list[types.ModuleType]) -> None:
        """Remember every function/class the checks rely on, to spot monkeypatching later."""
        mods = [m for name, m in list(sys.modules.items())
                if name in WATCHED_MODULES or name.split(".")[0] in ("labsupport", "grading")]
        snap = []
        for mod in mods + extra_modules:
            for attr, value in list(vars(mod).items()):
                if callable(value) or isinstance(value, types.ModuleType):
                    snap.append((mod, attr, value, getattr(value, "__code__", None)))
        if "torch" in sys.modules:  # Tensor is a Python class: its methods can be swapped
            tensor = sys.modules["torch"].Tensor
            snap += [(tensor, k, v, None) for k, v in list(vars(tensor).items()) if callable(v)]
        snap += [(f, "__code__", f.__code__, None) for f in [*self.public.values(), *self.hidden.values()]]
        self.snapshot = snap

    def tampered(self) -> str | None:
        for owner, attr, value, code in self.snapshot:
            now = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
            if now is not value or (code is not None and getattr(now, "__code__", None) is not code):
                name = getattr(owner, "__name__", "?")
                return f"your code replaced {name}.{attr}; monkeypatching libraries or the checker is not allowed"
        return None


def _blame(err: BaseException) -> str:
    """Point at the student's line when their code raised, never at test code."""
    text = f"{type(err).__name__}: {err}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(("<cell", "<template"))]
    if frames:
        f = frames[-1]
        where = f.filename.strip("<>")
        return f"your code raised {text} (line {f.lineno} of {where}, in {f.name})"
    return f"the test could not use your result: {text}"


def describe_error(err: BaseException, memory_mb: int, output_mb: int = 0) -> str:
    """One line for a failed test; the same wording as labsupport.check."""
    if isinstance(err, NotImplementedError):
        return "not implemented yet (the cell still raises NotImplementedError)"
    if isinstance(err, AssertionError):
        return str(err) or "wrong answer"
    if isinstance(err, SystemExit):
        return f"your code called sys.exit({err.code!r}); graded code must return normally"
    if isinstance(err, MemoryError):
        return f"your code ran out of memory (it may use {memory_mb} MB more than the libraries)"
    if isinstance(err, OSError) and err.errno == errno.EFBIG:
        return f"your code wrote more than the {output_mb} MB allowed (printing too much output?)"
    if isinstance(err, RecursionError):
        return "your code recursed too deeply (RecursionError)"
    if isinstance(err, Exception):
        return _blame(err)
    return f"your code raised {type(err).__name__}"  # KeyboardInterrupt, GeneratorExit, ...


def outcome(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], ctx: Context) -> tuple[bool, str]:
    """(passed, message) for one test call."""
    try:
        detail = fn(*args, **kwargs)
    except BaseException as err:
        return False, describe_error(err, ctx.memory_mb, ctx.output_mb)
    return True, str(detail) if detail else "all tests passed"


def _call_test(ctx: Context, key: str, ns: dict[str, Any], seed: int) -> tuple[bool, str]:
    t = ctx.tests[key]
    options = dict(t["options"], seed=seed)
    if t["public"]:
        fn = ctx.public[t["public"]]
        missing = [a for a in t["args"] if a not in ns]
        if missing:
            return False, f"your notebook does not define `{missing[0]}`"
        params = inspect.signature(fn).parameters
        args = [ns[a] for a in t["args"]]
        kwargs = {k: v for k, v in options.items() if k in params and k not in t["args"]}
    else:
        fn = ctx.hidden[t["hidden"]]
        args, kwargs = [], {}
        for p in inspect.signature(fn).parameters.values():
            if p.name in ns:
                kwargs[p.name] = ns[p.name]
            elif p.name in options:
                kwargs[p.name] = options[p.name]
            elif p.default is inspect.Parameter.empty:
                return False, f"your notebook does not define `{p.name}`"
    return outcome(fn, args, kwargs, ctx)


def compile_chunks(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], types.CodeType]]:
    """Compile each chunk with its real cell line numbers and register the cell text with linecache."""
    compiled, cells = [], {}
    for c in chunks:
        tree = ast.parse(c["source"])
        ast.increment_lineno(tree, c["lineno"] - 1)
        compiled.append((c, compile(tree, c["filename"], "exec")))
        lines = cells.setdefault(c["filename"], [])
        body = c["source"].splitlines(keepends=True)
        lines.extend(["\n"] * (c["lineno"] - 1 + len(body) - len(lines)))
        lines[c["lineno"] - 1: c["lineno"] - 1 + len(body)] = body
    for name, lines in cells.items():
        linecache.cache[name] = (sum(map(len, lines)), None, lines, name)
    return compiled


def run_exercise(ctx: Context, ex: dict[str, Any], pending: list[str], seed: int, wfd: int, nonce: str) -> None:
    """Body of the exercise process: exec, then each pending test. Reports; never returns normally."""
    me = os.getpid()

    def send(**msg: Any) -> None:
        if os.getpid() != me:  # a process the student forked is running our code: stay silent
            os._exit(0)
        msg["n"] = nonce
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(wfd, data):]

    ns = dict(ctx.base)
    ns.update(ctx.deps.get(ex["id"], {}))
    ns["__name__"] = "__main__"
    ctx.seed_everything(seed)
    try:
        for _chunk, code in compile_chunks(ex["chunks"]):
            exec(code, ns)  # noqa: S102 -- the whole point: run the student's code, sandboxed by our caller
    except SyntaxError as err:
        send(t="exec_error", message=f"syntax error: {err.msg} (line {err.lineno})")
        return
    except BaseException as err:
        send(t="exec_error", message=describe_error(err, ctx.memory_mb, ctx.output_mb))
        return
    bad = ctx.tampered()
    if bad:
        send(t="exec_error", message=bad)
        return
    send(t="ready")
    for key in pending:
        send(t="start", test=key)
        ctx.seed_everything(seed)
        start = time.perf_counter()
        passed, message = _call_test(ctx, key, ns, seed)
        bad = ctx.tampered()
        if bad:
            passed, message = False, bad
        send(t="done", test=key, passed=passed, message=message[:MAX_MESSAGE],
             seconds=round(time.perf_counter() - start, 3))
