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

import base64
import importlib
import inspect
import math
import pkgutil
import traceback
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 32  # nesting of recorded values
MAX_ITEMS = 2_000_000  # scalars + array elements in one check's records
MAX_MESSAGE = 2000  # characters of any failure message
NUMERIC_DTYPES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}
DICTS = (dict, Counter, OrderedDict, defaultdict)  # read through dict's own methods: overrides are ignored


class WrongAnswer(AssertionError):
    """A driver could not turn the student's value into plain data, or a judge found a difference."""


def short(x: object, n: int = 160) -> str:
    """repr(x), cut to n characters, for failure messages."""
    try:
        s = repr(x)
    except Exception:  # a student's object whose __repr__ fails
        s = f"<{type(x).__name__}>"
    return s if len(s) <= n else s[: n - 3] + "..."


def expect_equal(got: object, want: object, what: str) -> None:
    """Fail with "<what>: expected <want>, got <got>" unless they are equal (for judges and tests)."""
    if got != want:
        raise WrongAnswer(f"{what}: expected {short(want)}, got {short(got)}")


# ---------------------------------------------------------------------------------------------- plain data


def to_plain(value: Any, what: str = "the result", _depth: int = 0, _budget: list[int] | None = None) -> Any:
    """JSON-safe plain data for `value`, by exact type; anything else raises WrongAnswer naming `what`."""
    budget = _budget if _budget is not None else [MAX_ITEMS]
    if _depth > MAX_DEPTH:
        raise WrongAnswer(f"{what} is nested more than {MAX_DEPTH} levels deep")
    budget[0] -= 1
    if budget[0] < 0:
        raise WrongAnswer(f"{what} is far too large (more than {MAX_ITEMS} values)")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        if value.bit_length() > 256:
            raise WrongAnswer(f"{what} holds an integer with more than 256 bits")
        return value
    if t is float:
        return value if math.isfinite(value) else {"$f": repr(value)}
    if t is list:
        return [to_plain(v, what, _depth + 1, budget) for v in list.__iter__(value)]
    if t is tuple:
        return {"$t": [to_plain(v, what, _depth + 1, budget) for v in tuple.__iter__(value)]}
    if t in DICTS:
        return {"$d": [[to_plain(k, what, _depth + 1, budget), to_plain(v, what, _depth + 1, budget)]
                       for k, v in dict.items(value)]}
    module = t.__module__.split(".")[0]
    if module == "numpy":
        import numpy as np

        if t is np.ndarray:
            return _array(value, "$a", what, budget)
        if t in (np.bool_,):
            return bool(value)
        if issubclass(t, np.integer) and t.__module__ == "numpy":
            return int(value)
        if issubclass(t, np.floating) and t.__module__ == "numpy":
            return to_plain(float(value), what, _depth, budget)
    if module == "torch":
        import torch

        if t is torch.Tensor or t is torch.nn.Parameter:
            x = torch.Tensor.detach(value)
            if x.dtype == torch.bfloat16:
                x = x.float()
            return _array(x.cpu().numpy(), "$T", what, budget)
    kind = f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__
    raise WrongAnswer(f"{what} is a {kind}; the check needs plain values (int, float, str, bool, None, list, "
                      "tuple, dict, numpy array, torch.Tensor), not a subclass or another type")


def _array(a: Any, tag: str, what: str, budget: list[int]) -> dict[str, Any]:
    import numpy as np

    dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    code = dtype.str.lstrip("<|=")
    if code not in NUMERIC_DTYPES:
        raise WrongAnswer(f"{what} has dtype {a.dtype}; the check needs a bool, integer or float array")
    budget[0] -= int(a.size)
    if budget[0] < 0:
        raise WrongAnswer(f"{what} is far too large ({a.size} elements)")
    data = np.ascontiguousarray(a, dtype=dtype.newbyteorder("<"))
    return {tag: code, "shape": list(a.shape), "b64": base64.b64encode(data.tobytes()).decode()}


def from_plain(data: Any, _depth: int = 0) -> Any:
    """Inverse of `to_plain`, for data from an untrusted process: validates every node, never unpickles."""
    if _depth > MAX_DEPTH + 1:
        raise ValueError("nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [from_plain(v, _depth + 1) for v in data]
    if type(data) is not dict or len(data) not in (1, 3):
        raise ValueError(f"unexpected {type(data).__name__} in recorded data")
    if set(data) == {"$f"} and data["$f"] in ("nan", "inf", "-inf"):
        return float(data["$f"])
    if set(data) == {"$t"} and type(data["$t"]) is list:
        return tuple(from_plain(v, _depth + 1) for v in data["$t"])
    if set(data) == {"$d"} and type(data["$d"]) is list:
        out = {}
        for pair in data["$d"]:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict item")
            key = from_plain(pair[0], _depth + 1)
            try:
                hash(key)
            except TypeError:
                raise ValueError("unhashable dict key") from None
            out[key] = from_plain(pair[1], _depth + 1)
        return out
    tag = "$a" if "$a" in data else "$T"
    if set(data) == {tag, "shape", "b64"} and data[tag] in NUMERIC_DTYPES:
        import numpy as np

        shape = data["shape"]
        if type(shape) is not list or not all(type(s) is int and 0 <= s for s in shape):
            raise ValueError("malformed array shape")
        raw = base64.b64decode(data["b64"], validate=True)
        dtype = np.dtype("<" + data[tag])
        if len(raw) != dtype.itemsize * math.prod(shape):
            raise ValueError("array data does not match its shape")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if tag == "$T":
            import torch

            return torch.from_numpy(arr)
        return arr
    raise ValueError("unknown node in recorded data")


class Records(Mapping[str, Any]):
    """What a driver recorded: label -> plain value, in recording order."""

    def __init__(self, items: list[tuple[str, Any]] | None = None):
        self.items_ = list(items or [])
        self._index = {k: v for k, v in self.items_}

    def __getitem__(self, label: str) -> Any:
        return self._index[label]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.items_)

    def __len__(self) -> int:
        return len(self.items_)


class Trace:
    """The driver's recorder: each ``record`` stores one labelled value as plain data, immediately."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self._budget = [MAX_ITEMS]

    def record(self, label: str, value: Any) -> None:
        self.items.append([str(label), to_plain(value, str(label), 0, self._budget)])

    def data(self) -> list[list[Any]]:
        return self.items


def records(data: Any) -> Records:
    """Records from a driver's (untrusted) output: a list of [label, plain value] pairs."""
    if type(data) is not list:
        raise ValueError("recorded data is not a list")
    items = []
    for item in data:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
            raise ValueError("malformed record")
        items.append((item[0][:300], from_plain(item[1])))
    return Records(items)


# ---------------------------------------------------------------------------------------------- judging


def _close(got: Any, want: Any, rtol: float, atol: float) -> str | None:
    """None when `got` matches `want` (exact types, floats within tolerance), else what differs."""
    tg, tw = type(got), type(want)
    if tw is float and tg is int:  # an integer-valued answer where a float is expected is fine
        got, tg = float(got), float
    if tg is not tw:
        return f"expected a {tw.__name__}, got a {tg.__name__}"
    if tw is float:
        if math.isnan(want):
            return None if math.isnan(got) else "expected nan"
        return None if abs(got - want) <= atol + rtol * abs(want) else "values differ"
    if tw in (list, tuple):
        if len(got) != len(want):
            return f"expected length {len(want)}, got {len(got)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            why = _close(g, w, rtol, atol)
            if why:
                return f"item {i}: {why}"
        return None
    if tw is dict:
        if list(got) != list(want) and set(got) != set(want):
            extra, missing = set(got) - set(want), set(want) - set(got)
            return (f"missing keys {short(sorted(missing, key=repr), 80)}" if missing else
                    f"unexpected keys {short(sorted(extra, key=repr), 80)}")
        for k in want:
            why = _close(got[k], want[k], rtol, atol)
            if why:
                return f"at key {short(k, 60)}: {why}"
        return None
    if hasattr(want, "shape") and hasattr(want, "dtype"):
        import numpy as np  # here, not at the top: a notebook's check of plain values never needs numpy

        g, w = (np.asarray(x.detach().cpu() if hasattr(x, "detach") else x) for x in (got, want))
        if g.shape != w.shape:
            return f"expected shape {tuple(w.shape)}, got {tuple(g.shape)}"
        if (g.dtype.kind == "f") != (w.dtype.kind == "f") or (g.dtype.kind == "b") != (w.dtype.kind == "b"):
            return f"expected dtype {want.dtype}, got {got.dtype}"
        small = w.size <= 24
        if w.dtype.kind != "f":
            if np.array_equal(g, w):
                return None
            return f"expected {w.tolist()}, got {g.tolist()}" if small else "values differ"
        if np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True):
            return None
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf: the same infinity, not a difference
            diff = np.nanmax(np.abs(g64 - w64)) if g.size else 0.0
        if small:
            return (f"expected {np.round(w64, 4).tolist()}, got {np.round(g64, 4).tolist()} "
                    f"(max abs difference {diff:.3g})")
        first = tuple(int(i) for i in np.argwhere(~np.isclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True))[0])
        return (f"entry {list(first)} expected {w64[first]:.4g}, got {g64[first]:.4g} "
                f"(max abs difference {diff:.3g})")
    return None if got == want else "values differ"


def is_close(got: Any, want: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when `got` matches `want`: exact types, equal shapes and dtype kinds, floats within tolerance
    (numbers, lists, dicts, numpy arrays and tensors; -inf entries must match exactly)."""
    return _close(got, want, rtol, atol) is None


def expect_close(got: Any, want: Any, what: str, rtol: float = 1e-5, atol: float = 1e-8) -> None:
    """Fail with "<what>: <what differs>" unless `is_close(got, want)` (for judges and drivers)."""
    why = _close(got, want, rtol, atol)
    if why:
        raise WrongAnswer(f"{what}: {why}")


def expect_tensor(got: object, what: str, shape: tuple[int, ...] | None = None) -> Any:
    """`got` detached if it is one torch.Tensor (of `shape`, when given); else a clear wrong answer."""
    import torch  # lazily, like to_plain: `import labsupport` stays light for labs of plain values

    if type(got) in (tuple, list) and got and isinstance(got[0], torch.Tensor):
        raise WrongAnswer(f"{what} returned a {type(got).__name__} of {len(got)} tensors; return one tensor")
    if not isinstance(got, torch.Tensor):
        raise WrongAnswer(f"{what} must return a torch.Tensor, got {type(got).__name__}")
    if shape is not None and tuple(got.shape) != tuple(shape):
        raise WrongAnswer(f"{what}: expected shape {tuple(shape)}, got {tuple(got.shape)}")
    return got.detach()


def compare(got: Records, want: Records, rtol: float = 1e-5, atol: float = 1e-8, **_: Any) -> str:
    """The default judge: same labels in order, and every value matches the reference's."""
    for i, (label, w) in enumerate(want.items_):
        if i >= len(got.items_):
            raise WrongAnswer(f"{label}: no result recorded")
        g_label, g = got.items_[i]
        if g_label != label:
            raise WrongAnswer(f"{label}: no result recorded")
        why = _close(g, w, rtol, atol)
        if why:
            if hasattr(w, "shape"):
                raise WrongAnswer(f"{label}: {why}")
            raise WrongAnswer(f"{label}: expected {short(w)}, got {short(g)}")
    if len(got) != len(want):
        raise WrongAnswer(f"{len(got)} results recorded, expected {len(want)}")
    return f"{len(want)} results match the reference"


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
    if isinstance(err, AssertionError):
        return (str(err) or "wrong answer")[:MAX_MESSAGE]
    if not isinstance(err, Exception):  # KeyboardInterrupt, GeneratorExit, ...
        return f"your code raised {type(err).__name__}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if student_frame is None or student_frame(f)]
    where = ""
    if frames:
        f = frames[-1]
        where = (f" (line {f.lineno} of {f.filename.strip('<>')}, in {f.name})" if f.filename.startswith("<")
                 else f" (line {f.lineno} of {f.name})")
    return f"your code raised {type(err).__name__}: {str(err)[:600]}{where}"[:MAX_MESSAGE]


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
