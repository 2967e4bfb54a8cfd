"""Self-checks: ``labsupport.check("01.3", count_pairs)`` tests a student's objects and prints PASS/FAIL with
a hint. It never raises on a wrong answer (a notebook keeps running) and returns a truthy/falsy result.

Every check has two halves, so that a grader can run the first next to untrusted code and the second
where that code cannot reach it (``grading/`` does exactly this; a notebook runs both in-process):

* the **driver** runs next to the student's code. It builds inputs (deterministically, from ``seed``),
  calls the student's objects -- only those, in the order the exercise lists them -- and records what they
  return with ``t.record(label, value)``. ``record`` converts the value to plain data at once, with exact
  ``type()`` checks: None, bool, int, float, str, and list/tuple/dict of those, numpy arrays and
  ``torch.Tensor`` (numbers only). A subclass, a lazy object or anything else is a wrong answer. The driver
  never decides pass or fail.
* the **judge** runs in the trusted process. It gets the student's records (``got``) and the records of
  the same driver run on the course's reference objects (``want``) and raises ``AssertionError("what is
  wrong")`` or returns a short success note. The default judge, `compare`, wants the same labels in the
  same order, the same types and shapes, equal values, and floats within the ``rtol``/``atol`` options.

Write a check in ``labsupport/checks/labNN.py``::

    @exercise("01.3", title="count adjacent pairs", hint="for each pair in zip(word, word[1:]) ...",
              reference=["labsupport.bpe_train:count_pairs"])   # "module:attribute", one per student object
    def drive_count_pairs(t: Trace, count_pairs) -> None:
        for words in PAIR_CASES:                                # inputs built at import time or from `seed`
            t.record(f"count_pairs({short(words)})", count_pairs(dict(words)))

Rules: the driver's parameters are ``t``, then the student's objects (named like the exercise's ``defines``),
then any of ``seed`` and the options (keyword-only, defaults from ``options=``; a grading spec's options
override them). Build inputs without calling a graded reference or a spec's `forbid` (they are replaced by
tripwires while a submission runs): compute them at import, as checks/lab04.py does. A check module's
``PRELOAD = ("torch._dynamo",)`` names modules its drivers import lazily (an optimizer's first step): the
grader imports them once, not in every exercise process. The labels are the trusted text of failure
messages: make them say what was called.
A custom ``judge(got, want, **options)`` gets two `Records` (label -> value) for checks that compare more
than values (e.g. naming a typical mistake); ``reference=None`` runs no reference (``want`` is empty).
``success="..."`` is the note printed on a pass. Tests: tests/test_checks_labNN.py (the reference passes,
typical wrong answers fail with a clear message).
Grading specs name checks by id; the private hidden tests use the same two halves (grading/README.md).

Hints come in two levels: ``hint`` names the concept; ``hint2``, printed from the second failure of the same
exercise on, points at the API to use. Neither contains the solution's code (``tests/test_hints.py`` compares
them with the solution notebooks).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labsupport.plain import (
    MAX_MESSAGE,
    Records,
    Trace,
    WrongAnswer,
    compare,
    expect_close,
    expect_equal,
    expect_tensor,
    from_plain,
    is_close,
    records,
    short,
    to_plain,
)

# The check API in one place: notebooks, check modules and the grader import these names from here.
__all__ = ["MAX_MESSAGE", "CheckResult", "Exercise", "Records", "Trace", "WrongAnswer", "check", "compare",
           "describe_error", "driver_kwargs", "exercise", "expect_close", "expect_equal", "expect_tensor",
           "from_plain", "get_exercise", "is_close", "judge", "records", "reference_records", "resolve", "run_check",
           "run_driver", "short", "to_plain"]


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Exercise:
    id: str  # "01.2"
    title: str
    hint: str
    drive: Callable[..., None]  # drive(t, *student objects, seed=..., **options)
    reference: tuple[str, ...] | None  # "module:attribute" of the graded reference objects, or None
    judge: Callable[..., str | None] = compare
    options: Mapping[str, Any] = field(default_factory=dict)
    success: str = ""  # the note shown on a pass (default: the judge's)
    hint2: str = ""  # level 2, shown on a repeated failure: the API to use

    def run_options(self, overrides: Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
        """The driver/judge options: the check's defaults, then the spec's (which always win), then seed."""
        return {**self.options, **(overrides or {}), "seed": seed}


EXERCISES: dict[str, Exercise] = {}
FAILURES: dict[str, int] = {}  # failed `check` calls per exercise in this process: picks the hint level


def exercise(id: str, title: str, hint: str, reference: list[str] | None = None,
             judge: Callable[..., str | None] | None = None, options: Mapping[str, Any] | None = None,
             success: str = "", hint2: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a driver under an exercise id (see the module docstring)."""

    def wrap(drive: Callable[..., Any]) -> Callable[..., Any]:
        if id in EXERCISES:
            raise ValueError(f"exercise {id!r} registered twice")
        if reference is None and judge is None:
            raise ValueError(f"exercise {id!r}: give `reference=` (compared by `compare`) or a custom `judge=`")
        EXERCISES[id] = Exercise(id, title, hint, drive, tuple(reference) if reference is not None else None,
                                 judge or compare, dict(options or {}), success, hint2=hint2)
        return drive

    return wrap


def resolve(path: str) -> Any:
    """The object at "package.module:attr.sub"."""
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _load_all() -> None:
    from labsupport import checks  # on first use: the check modules import this one (and build their inputs)

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


def driver_kwargs(drive: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a driver or judge declares, by name (never a student's name)."""
    params = inspect.signature(drive).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def run_driver(drive: Callable[..., Any], objects: list[Any], options: Mapping[str, Any]) -> list[list[Any]]:
    """Run a driver on `objects`; its records as plain (JSON-safe) data. Student errors propagate."""
    t = Trace()
    drive(t, *objects, **driver_kwargs(drive, options))
    return t.data()


def judge(ex_judge: Callable[..., str | None], got: Records, want: Records, options: Mapping[str, Any],
          success: str = "") -> str:
    """Run a judge; the success note (it raises AssertionError on a wrong answer)."""
    detail = ex_judge(got, want, **driver_kwargs(ex_judge, options))
    return (success or str(detail or "") or "all tests passed")[:MAX_MESSAGE]


_WANT: dict[tuple[str, str], Records] = {}


def reference_records(ex: Exercise, options: Mapping[str, Any]) -> Records:
    """The driver's records on the reference objects (cached per options: drivers are deterministic)."""
    if ex.reference is None:
        return Records()
    key = (ex.id, repr(sorted(options.items())))
    if key not in _WANT:
        _WANT[key] = records(run_driver(ex.drive, [resolve(p) for p in ex.reference], options))
    return _WANT[key]


def describe_error(err: BaseException, student_frame: Callable[[traceback.FrameSummary], bool] | None = None) -> str:
    """One line for an exception raised while a driver ran the student's code. `student_frame` picks the
    traceback frames that are the student's (the grader: its compiled cells); the last one is named."""
    if isinstance(err, NotImplementedError):
        return "not implemented yet (the cell still raises NotImplementedError)"
    try:
        text = str(err)
    except Exception:  # a student's exception whose __str__ fails: its type still says something
        text = "(its message could not be read)"
    if isinstance(err, AssertionError):
        return (text or "wrong answer")[:MAX_MESSAGE]
    if not isinstance(err, Exception):  # KeyboardInterrupt, GeneratorExit, ...
        return f"your code raised {type(err).__name__}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if student_frame is None or student_frame(f)]
    where = ""
    if frames:
        f = frames[-1]
        where = (f" (line {f.lineno} of {f.filename.strip('<>')}, in {f.name})" if f.filename.startswith("<")
                 else f" (line {f.lineno} of {f.name})")
    return f"your code raised {type(err).__name__}: {text[:600]}{where}"[:MAX_MESSAGE]


def run_check(id: str, *args: Any, **options: Any) -> tuple[bool, str]:
    """Run one exercise's check in this process; return (passed, message) without printing."""
    ex = get_exercise(id)
    opts = ex.run_options(options)
    try:
        got = records(run_driver(ex.drive, list(args), opts))
    except Exception as err:
        return False, describe_error(err)
    try:
        return True, judge(ex.judge, got, reference_records(ex, opts), opts, ex.success)
    except AssertionError as err:
        return False, (str(err) or "wrong answer")[:MAX_MESSAGE]


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


def check(id: str, *args: Any, **options: Any) -> CheckResult:
    """Check exercise `id` with the student's objects; print pass/fail (and a hint on failure)."""
    ex = get_exercise(id)
    ok, msg = run_check(id, *args, **options)
    if ok:
        print(f"PASS  exercise {id} ({ex.title}): {msg}")
    else:  # the concept hint first; from the second failure of the same exercise on, the API hint too
        FAILURES[id] = FAILURES.get(id, 0) + 1
        print(f"FAIL  exercise {id} ({ex.title}): {msg}\n      hint: {ex.hint}")
        if ex.hint2:
            if FAILURES[id] > 1:
                print(f"      hint 2: {ex.hint2}")
            else:
                print("      (run the check again after a change: a second failure shows a more specific hint)")
    return CheckResult(id, ok, msg)
