"""The inside of one exercise process (sandboxed, untrusted): execute the student's extracted code in a fresh
namespace, then run each test's *driver* on the student's objects and report what they returned as plain
data, one JSON line per step. Nothing here decides pass or fail: the judges run in the trusted grader
(grade.py / judge.py), which this process cannot reach.

What this process holds: the lab's prelude and setup objects, the solution's code for the exercises this
one depends on, the public drivers (labsupport.checks) and the driver half of the hidden tests (compiled
without their source). The graded references of the exercise under test are replaced by tripwires first.
"""

from __future__ import annotations

import ast
import errno
import json
import linecache
import os
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labsupport.check import describe_error as describe_check_error
from labsupport.check import run_driver, short

MAX_DATA = 32 * 2**20  # bytes of recorded data one test may send


class ReferenceUsed(AssertionError):
    """Raised by a tripwire that stands in for a graded reference."""


@dataclass
class Loaded:
    """What the sandbox runner loads once, before any submission: nothing a student may not see."""

    base: dict[str, Any]  # prelude + spec setup namespace
    deps: dict[str, dict[str, Any]]  # exercise id -> solution objects it depends on
    drivers: dict[str, Callable[..., Any]]  # test key -> driver
    tests: dict[str, dict[str, Any]]  # test key -> {"args", "options", "references"}
    seed_everything: Callable[[int], None]
    memory_mb: int = 0
    output_mb: int = 0
    tripped: list[str] = field(default_factory=list)


def _tripwire(path: str, original: Any) -> Any:
    message = f"uses the course's reference implementation ({path.replace(':', '.')})"

    def trip(*_a: Any, **_k: Any) -> Any:
        raise ReferenceUsed(message)

    if isinstance(original, type):
        return type(original.__name__, (), {"__new__": trip, "__init_subclass__": classmethod(trip),
                                            "__getattr__": trip})
    trip.__name__ = getattr(original, "__name__", "reference")
    return trip


def install_tripwires(paths: list[str], namespaces: list[dict[str, Any]]) -> None:
    """Replace every graded reference in `paths` ("module:attr" or "module:Class.method") -- wherever a loaded
    module, a class or one of `namespaces` holds it -- by a tripwire that raises ReferenceUsed, so calling or
    subclassing it yields no output. Modules imported later get the tripwire from the module they import it
    from."""
    originals: dict[int, tuple[str, Any]] = {}
    owners: list[tuple[Any, str, int]] = []  # (class or module, attribute, id of the original)
    for path in paths:
        module, _, attr = path.partition(":")
        owner = sys.modules.get(module)
        *parents, last = attr.split(".")
        for part in parents:
            owner = getattr(owner, part, None) if owner is not None else None
        if owner is None:
            continue
        d = vars(owner) if isinstance(owner, (type, types.ModuleType)) else {}
        if last not in d:
            continue
        value = d[last]
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, (int, float, str, bool, bytes, types.ModuleType)) or value is None:
            continue
        originals.setdefault(id(value), (path, value))
        owners.append((owner, last, id(value)))
    if not originals:
        return
    wires = {k: _tripwire(p, o) for k, (p, o) in originals.items()}
    for owner, last, key in owners:  # a method lives in its class's __dict__, which the loop below cannot write
        try:
            setattr(owner, last, wires[key])
        except (AttributeError, TypeError):
            pass
    for d in [vars(m) for m in list(sys.modules.values()) if m is not None] + namespaces:
        for name, value in list(d.items()):
            if id(value) in wires and originals[id(value)][1] is value:
                d[name] = wires[id(value)]


def describe_error(err: BaseException, memory_mb: int, output_mb: int = 0) -> str:
    """One line for an exception the student's code raised: the grader's own cases (a tripwire, limits,
    sys.exit), else labsupport.check's wording, naming the last line of the student's cells."""
    if isinstance(err, ReferenceUsed):
        return str(err)
    if isinstance(err, SystemExit):
        return f"your code called sys.exit({short(err.code, 60)}); graded code must return normally"
    if isinstance(err, MemoryError):
        return f"your code ran out of memory (it may use {memory_mb} MB more than the libraries)"
    if isinstance(err, OSError) and err.errno == errno.EFBIG:
        return f"your code wrote more than the {output_mb} MB allowed (printing too much output?)"
    if isinstance(err, RecursionError):
        return "your code recursed too deeply (RecursionError)"
    return describe_check_error(err, student_frame=lambda f: f.filename.startswith(("<cell", "<template")))


def compile_chunks(chunks: list[dict[str, Any]], lines: bool = True) -> list[tuple[dict[str, Any], types.CodeType]]:
    """Compile each chunk with its real cell line numbers; with `lines`, register the text with linecache."""
    compiled, cells = [], {}
    for c in chunks:
        tree = ast.parse(c["source"])
        ast.increment_lineno(tree, c["lineno"] - 1)
        compiled.append((c, compile(tree, c["filename"], "exec")))
        if lines:
            body = c["source"].splitlines(keepends=True)
            text = cells.setdefault(c["filename"], [])
            text.extend(["\n"] * (c["lineno"] - 1 + len(body) - len(text)))
            text[c["lineno"] - 1: c["lineno"] - 1 + len(body)] = body
    for name, text in cells.items():
        linecache.cache[name] = (sum(map(len, text)), None, text, name)
    return compiled


def run_exercise(loaded: Loaded, ex: dict[str, Any], pending: list[str], seed: int, wfd: int) -> None:
    """Body of the exercise process: exec, then each pending test's driver. Reports; never decides."""

    def send(**msg: Any) -> None:
        data = (json.dumps(msg, allow_nan=False) + "\n").encode()
        while data:
            data = data[os.write(wfd, data):]

    ns = dict(loaded.base)
    ns.update(loaded.deps.get(ex["id"], {}))
    ns["__name__"] = "__main__"
    install_tripwires(sorted({p for k in pending for p in loaded.tests[k]["references"]}), [ns])
    loaded.seed_everything(seed)
    try:
        for _chunk, code in compile_chunks(ex["chunks"]):
            exec(code, ns)  # noqa: S102 -- the whole point: run the student's code, sandboxed by our caller
    except SyntaxError as err:
        send(t="exec_error", message=f"syntax error: {short(err.msg, 200)} (line {err.lineno})")
        return
    except BaseException as err:
        send(t="exec_error", message=describe_error(err, loaded.memory_mb, loaded.output_mb))
        return
    send(t="ready")
    for key in pending:
        send(t="start", test=key)
        test = loaded.tests[key]
        loaded.seed_everything(seed)
        start = time.perf_counter()
        missing = [a for a in test["args"] if a not in ns]
        if missing:
            send(t="done", test=key, message=f"your notebook does not define `{missing[0]}`", seconds=0.0)
            continue
        try:
            data = run_driver(loaded.drivers[key], [ns[a] for a in test["args"]], dict(test["options"], seed=seed))
            line = json.dumps(data, allow_nan=False)
        except BaseException as err:
            send(t="done", test=key, message=describe_error(err, loaded.memory_mb, loaded.output_mb),
                 seconds=round(time.perf_counter() - start, 3))
            continue
        seconds = round(time.perf_counter() - start, 3)
        if len(line) > MAX_DATA:
            send(t="done", test=key, message=f"your results are too large to grade ({len(line) >> 20} MB)",
                 seconds=seconds)
            continue
        raw = f'{{"t": "done", "test": {json.dumps(key)}, "seconds": {seconds}, "data": {line}}}\n'.encode()
        while raw:
            raw = raw[os.write(wfd, raw):]
