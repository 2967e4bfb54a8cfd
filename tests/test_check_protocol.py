"""The check protocol (labsupport/check.py): drivers record plain data by exact type, judges compare it with
the reference's records, and nothing a student returns can lie its way through a comparison."""

import json
import math
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from labsupport import plain
from labsupport.check import Records, Trace, WrongAnswer, compare, from_plain, records, run_check, to_plain

check = sys.modules["labsupport.check"]  # the module (`labsupport.check` is also the function)


def roundtrip(value):
    return from_plain(json.loads(json.dumps(to_plain(value), allow_nan=False)))


@pytest.mark.parametrize("value", [None, True, 3, -2**70, 1.5, "héllo 🤗", [1, [2.0]], (1, ("a", None)),
                                   {("a", "b"): 3, 7: [1]}, {"$t": 1}, float("inf")])
def test_plain_roundtrip(value):
    assert roundtrip(value) == value and type(roundtrip(value)) is type(value)


def test_arrays_and_tensors_roundtrip_without_pickle():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = roundtrip(a)
    assert type(got) is np.ndarray and got.dtype == np.float32 and np.array_equal(got, a)
    t = torch.arange(4, dtype=torch.bfloat16)
    got = roundtrip(t)
    assert type(got) is torch.Tensor and torch.equal(got, t.float())
    assert math.isnan(roundtrip(float("nan")))
    assert roundtrip(np.int64(3)) == 3 and type(roundtrip(np.float32(0.5))) is float


def test_counter_and_defaultdict_are_read_as_plain_dicts():
    assert roundtrip(Counter({("a", "b"): 2})) == {("a", "b"): 2}
    assert type(roundtrip(defaultdict(int, x=1))) is dict


class LyingDict(dict):
    def __eq__(self, other):
        return True


class LyingTensor(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True


class LyingStr(str):
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("liar", [LyingDict(), LyingTensor(torch.zeros(2)), LyingStr("x"), [LyingStr("x")],
                                  {"k": LyingDict()}, (i for i in range(3)), np.zeros(2, dtype=object)])
def test_objects_that_lie_are_wrong_answers(liar):
    with pytest.raises(WrongAnswer):
        to_plain(liar, "f(x)")


def test_too_deep_or_too_large_is_refused():
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(WrongAnswer, match="nested"):
        to_plain(deep)
    with pytest.raises(WrongAnswer, match="too large"):
        to_plain(np.zeros(plain.MAX_ITEMS + 1, dtype=np.int8))


@pytest.mark.parametrize("bad", [{"$x": 1}, {"$a": "O", "shape": [1], "b64": ""}, {"$d": [[[1], 2]]},
                                 {"$a": "f8", "shape": [2], "b64": "AAAA"}, {"$d": [1]}, {"a": 1}])
def test_from_plain_rejects_malformed_data(bad):
    with pytest.raises(ValueError):
        from_plain(bad)


def test_compare_types_labels_and_tolerance():
    want = Records([("f(1)", 1.0), ("g()", [1, 2])])
    assert compare(Records([("f(1)", 1.0 + 1e-9), ("g()", [1, 2])]), want)
    assert compare(Records([("f(1)", 1), ("g()", [1, 2])]), want)  # an int where a float is expected
    with pytest.raises(AssertionError, match="g\\(\\): expected"):
        compare(Records([("f(1)", 1.0), ("g()", (1, 2))]), want)
    with pytest.raises(AssertionError, match="no result"):
        compare(Records([("f(1)", 1.0)]), want)
    with pytest.raises(AssertionError):
        compare(Records([("f(1)", 1.1), ("g()", [1, 2])]), want)
    assert compare(Records([("f(1)", 1.1), ("g()", [1, 2])]), want, atol=0.2)


def test_records_validates_untrusted_driver_output():
    t = Trace()
    t.record("x", {"a": np.ones(2)})
    got = records(json.loads(json.dumps(t.data())))
    assert list(got) == ["x"] and np.array_equal(got["x"]["a"], np.ones(2))
    for bad in [{"x": 1}, [["x"]], [[1, 2]]]:
        with pytest.raises(ValueError):
            records(bad)


def test_spec_options_win_and_drivers_take_only_declared_options():
    seen = {}

    def drive(t, f, *, seed, atol=0.0):
        seen.update(seed=seed, atol=atol)
        t.record("f()", f())

    ex = check.Exercise("98.1", "t", "h", drive, ("math:pi",), lambda got, want: "ok", {"atol": 1.0})
    opts = ex.run_options({"atol": 2.0, "rtol": 0.5}, seed=7)
    check.run_driver(ex.drive, [lambda: 1], opts)
    assert seen == {"seed": 7, "atol": 2.0}


def test_in_notebook_check_uses_the_same_driver_and_judge(capsys):
    assert run_check("01.3", lambda words: Counter({("a", "b"): 1}))[0] is False
    liar_ok, msg = run_check("01.3", lambda words: LyingDict())
    assert not liar_ok and "LyingDict" in msg
    res = check.check("01.3", check.resolve("labsupport.bpe_train:count_pairs"))
    assert res and "PASS" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- shared helpers


def test_expect_close_names_the_first_differing_entry_and_matches_infinities():
    want = torch.full((5, 6), 0.5)
    want[1, 2] = float("-inf")
    check.expect_close(want.clone(), want, "logits")  # -inf where -inf is expected is no difference
    assert check.is_close(want.double(), want)  # float64 for float32 is fine
    got = want.clone()
    got[1, 2] = 0.25  # should have been masked
    with pytest.raises(check.WrongAnswer, match=r"logits: entry \[1, 2\] expected -inf, got 0.25"):
        check.expect_close(got, want, "logits")
    got = want.clone()
    got[3, 4] += 1e-3
    assert not check.is_close(got, want) and check.is_close(got, want, atol=1e-2)
    assert not check.is_close(want.long(), want)  # integers where floats are expected
    assert not check.is_close(want[:2], want)
    assert check.is_close(1, 1.0) and not check.is_close(1.0, 1.1) and check.is_close(1.0, 1.1, rtol=0.2)


def test_expect_tensor_rejects_what_is_not_one_tensor_of_the_shape():
    x = torch.ones(2, 3, requires_grad=True)
    assert check.expect_tensor(x, "f").requires_grad is False
    with pytest.raises(check.WrongAnswer, match="returned a tuple of 2 tensors; return one tensor"):
        check.expect_tensor((x, x), "f")
    with pytest.raises(check.WrongAnswer, match="must return a torch.Tensor, got list"):
        check.expect_tensor([[1.0]], "f")
    with pytest.raises(check.WrongAnswer, match=r"expected shape \(3, 2\), got \(2, 3\)"):
        check.expect_tensor(x, "f", shape=(3, 2))


def test_describe_error_names_the_last_student_frame():
    def student() -> None:
        raise KeyError("k")

    try:
        student()
    except KeyError as err:
        assert check.describe_error(err).startswith("your code raised KeyError: 'k' (line ")
        assert "of student)" in check.describe_error(err)
        assert check.describe_error(err, student_frame=lambda f: False) == "your code raised KeyError: 'k'"
    assert check.describe_error(NotImplementedError()).startswith("not implemented yet")

    class Unreadable(ValueError):  # a student's exception whose message cannot be read
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert check.describe_error(Unreadable()).startswith("your code raised Unreadable: (its message could not be read)")
    assert check.describe_error(type("Bad", (AssertionError,), {"__str__": Unreadable.__str__})()) == \
        "(its message could not be read)"
    assert check.describe_error(AssertionError()) == "wrong answer"
