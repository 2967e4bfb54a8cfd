"""Self-checks: ``labsupport.check("01.2", my_function)`` runs an exercise's public tests against the
student's live objects and prints a clear pass/fail with a hint. It never raises on a wrong answer,
so a notebook keeps running; it returns True/False.

Checks for lab NN live in ``labsupport/checks/labNN.py`` and register themselves with ``@exercise``.
Hints come in two levels: the first names the concept; the second, printed from the second failure of
the same exercise on, points at the API to use. Neither contains the solution's code
(``tests/test_hints.py`` compares them with the solution notebooks).
The grader (``grading/``) runs the very same functions as its public tests.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Exercise:
    id: str  # "01.2"
    title: str
    hint: str  # level 1: the concept
    func: Callable[..., str | None]  # raises AssertionError on a wrong answer; may return a success detail
    hint2: str = ""  # level 2, shown on a repeated failure: the API to use


EXERCISES: dict[str, Exercise] = {}
FAILURES: dict[str, int] = {}  # failed `check` calls per exercise in this process: picks the hint level


def short(x: object, n: int = 160) -> str:
    """repr(x), cut to n characters, for failure messages."""
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def expect_equal(got: object, want: object, what: str) -> None:
    """Fail the check with "<what>: expected <want>, got <got>" unless they are equal."""
    if got != want:
        raise AssertionError(f"{what}: expected {short(want)}, got {short(got)}")


def exercise(id: str, title: str, hint: str, hint2: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a check function under an exercise id, with a concept hint and an API hint."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        if id in EXERCISES:
            raise ValueError(f"exercise {id!r} registered twice")
        EXERCISES[id] = Exercise(id, title, hint, func, hint2)
        return func

    return wrap


def _load_all() -> None:
    from labsupport import checks

    for mod in pkgutil.iter_modules(checks.__path__):
        importlib.import_module(f"labsupport.checks.{mod.name}")


def get_exercise(id: str) -> Exercise:
    if id not in EXERCISES:  # import only this lab's checks (fast), else all of them (to list what exists)
        try:
            importlib.import_module(f"labsupport.checks.lab{id.split('.')[0]}")
        except ImportError:
            pass
    if id not in EXERCISES:
        _load_all()
    if id not in EXERCISES:
        raise KeyError(f"unknown exercise {id!r}; known: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[id]


def run_check(id: str, *args: Any, **kwargs: Any) -> tuple[bool, str]:
    """Run one exercise's check; return (passed, message) without printing."""
    ex = get_exercise(id)
    try:
        detail = ex.func(*args, **kwargs)
    except NotImplementedError:
        return False, "not implemented yet (the cell still raises NotImplementedError)"
    except AssertionError as err:
        return False, str(err) or "wrong answer"
    except Exception as err:  # the student's code crashed inside the check
        last = traceback.extract_tb(err.__traceback__)[-1]
        return False, f"your code raised {type(err).__name__}: {err} (line {last.lineno} of {last.name})"
    return True, detail or "all tests passed"


@dataclass(frozen=True)
class CheckResult:
    """Truthy when the check passed. Shows nothing in a notebook (the check already printed)."""

    id: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        pass


def check(id: str, *args: Any, **kwargs: Any) -> CheckResult:
    """Check exercise `id` with the student's objects; print pass/fail (and a hint on failure).

    The first failure shows the concept hint; later failures of the same exercise add the API hint.
    """
    ex = get_exercise(id)
    ok, msg = run_check(id, *args, **kwargs)
    if ok:
        print(f"PASS  exercise {id} ({ex.title}): {msg}")
    else:
        FAILURES[id] = FAILURES.get(id, 0) + 1
        print(f"FAIL  exercise {id} ({ex.title}): {msg}\n      hint: {ex.hint}")
        if ex.hint2:
            if FAILURES[id] > 1:
                print(f"      hint 2: {ex.hint2}")
            else:
                print("      (run the check again after a change: a second failure shows a more specific hint)")
    return CheckResult(id, ok, msg)
