"""Lab 04's self-checks pass the reference solutions (and a few equivalent ones) and catch typical wrong answers."""

import pytest
import torch
import torch.nn.functional as F

from labsupport.check import run_check
from labsupport.checks import lab04
from labsupport.generate import apply_temperature, sample_next, top_k_filter

# ---------------------------------------------------------------------------------------------- right answers


def temperature_by_reciprocal(logits, temperature):  # multiplies by 1/T: same up to rounding
    return logits * (1.0 / temperature)


def top_k_by_sorting(logits, k):  # a different but correct route: sort, read the k-th value, compare
    k = min(k, logits.size(-1))
    kth = logits.sort(dim=-1, descending=True).values[:, k - 1: k]
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


# ---------------------------------------------------------------------------------------------- wrong answers


def temperature_multiplies(logits, temperature):
    return logits * temperature


def temperature_ignored(logits, temperature):
    return logits.clone()


def temperature_in_place(logits, temperature):
    logits /= temperature
    return logits


def temperature_returns_probs(logits, temperature):
    return F.softmax(logits / temperature, dim=-1)


def temperature_squared(logits, temperature):
    return logits / temperature**2


def temperature_shifted(logits, temperature):  # subtracts the max first: not what the docstring asks for
    return (logits - 1.0) / temperature


def top_k_keeps_k_plus_one(logits, k):
    kth = torch.topk(logits, min(k + 1, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_drops_ties(logits, k):  # keeps exactly k tokens by index: drops tokens tied with the k-th
    idx = torch.topk(logits, min(k, logits.size(-1)), dim=-1).indices
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, idx, logits.gather(-1, idx))


def top_k_less_equal(logits, k):  # masks the k-th itself too: keeps k - 1
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits <= kth, float("-inf"))


def top_k_zero_fill(logits, k):  # 0 is a perfectly ordinary logit, not "removed"
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_k_global_threshold(logits, k):  # one threshold for the whole batch instead of one per row
    kth = torch.topk(logits.flatten(), min(k, logits.numel())).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_crashes_when_k_exceeds_vocab(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_in_place(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    logits[logits < kth] = float("-inf")
    return logits


def top_k_smallest(logits, k):  # keeps the k least likely tokens
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1, largest=False).values[..., -1:]
    return logits.masked_fill(logits > kth, float("-inf"))


def not_implemented(*args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------- tests

RIGHT = [
    ("04.1", apply_temperature),
    ("04.1", temperature_by_reciprocal),
    ("04.2", top_k_filter),
    ("04.2", top_k_by_sorting),
]
WRONG = [
    ("04.1", temperature_multiplies),
    ("04.1", temperature_ignored),
    ("04.1", temperature_in_place),
    ("04.1", temperature_returns_probs),
    ("04.1", temperature_squared),
    ("04.1", temperature_shifted),
    ("04.2", top_k_keeps_k_plus_one),
    ("04.2", top_k_drops_ties),
    ("04.2", top_k_less_equal),
    ("04.2", top_k_zero_fill),
    ("04.2", top_k_global_threshold),
    ("04.2", top_k_crashes_when_k_exceeds_vocab),
    ("04.2", top_k_in_place),
    ("04.2", top_k_smallest),
]


@pytest.mark.parametrize("ex,fn", RIGHT, ids=[f"{ex}-{fn.__name__}" for ex, fn in RIGHT])
def test_right_answer_passes(ex, fn):
    ok, msg = run_check(ex, fn)
    assert ok, msg


@pytest.mark.parametrize("ex,fn", WRONG, ids=[f"{ex}-{fn.__name__}" for ex, fn in WRONG])
def test_wrong_answer_fails(ex, fn):
    ok, msg = run_check(ex, fn)
    assert not ok and msg


@pytest.mark.parametrize("ex", ["04.1", "04.2"])
def test_unfinished_exercise_fails_cleanly(ex):
    ok, msg = run_check(ex, not_implemented)
    assert not ok and "not implemented" in msg


def test_messages_say_what_is_wrong():
    assert "in place" in run_check("04.1", temperature_in_place)[1]
    assert "-inf" in run_check("04.2", top_k_zero_fill)[1]
    assert "changed its input" in run_check("04.2", top_k_in_place)[1]


def test_checks_are_deterministic():
    assert run_check("04.2", top_k_drops_ties) == run_check("04.2", top_k_drops_ties)


def test_sampling_step_with_reference_functions_matches_sample_next():
    """The check's own sampling step must agree with sample_next exactly, or right answers would fail."""
    logits = lab04.random_logits(rows=64, vocab=30, seed=11)
    for t, k in ((0.5, None), (1.0, 3), (2.0, 30)):
        got = lab04._sampling_step(logits, t, k, torch.Generator().manual_seed(5))
        assert torch.equal(got, sample_next(logits, t, k, generator=torch.Generator().manual_seed(5)))
