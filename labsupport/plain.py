"""Plain data between a check's driver and its judge (see labsupport/check.py), and how it is compared.

A driver records what the student's objects return with `Trace.record`, which converts it at once to JSON-safe
plain data by exact ``type()``; `from_plain` turns it back on the judge's side, without pickle. `compare` is the
default judge; `expect_close` / `is_close` / `expect_tensor` / `expect_equal` are the helpers custom judges and
drivers share, so every check words a difference the same way.
"""

from __future__ import annotations

import base64
import math
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

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
        if t is np.ndarray:
            return _array(value, "$a", what, budget)
        if t in (np.bool_,):
            return bool(value)
        if issubclass(t, np.integer) and t.__module__ == "numpy":
            return int(value)
        if issubclass(t, np.floating) and t.__module__ == "numpy":
            return to_plain(float(value), what, _depth, budget)
    if module == "torch":
        if t is torch.Tensor or t is torch.nn.Parameter:
            x = torch.Tensor.detach(value)
            if x.dtype == torch.bfloat16:
                x = x.float()
            return _array(x.cpu().numpy(), "$T", what, budget)
    kind = f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__
    raise WrongAnswer(f"{what} is a {kind}; the check needs plain values (int, float, str, bool, None, list, "
                      "tuple, dict, numpy array, torch.Tensor), not a subclass or another type")


def _array(a: Any, tag: str, what: str, budget: list[int]) -> dict[str, Any]:
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
        shape = data["shape"]
        if type(shape) is not list or not all(type(s) is int and 0 <= s for s in shape):
            raise ValueError("malformed array shape")
        raw = base64.b64decode(data["b64"], validate=True)
        dtype = np.dtype("<" + data[tag])
        if len(raw) != dtype.itemsize * math.prod(shape):
            raise ValueError("array data does not match its shape")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if tag == "$T":
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
