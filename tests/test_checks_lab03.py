"""Lab 03's self-checks pass the reference solutions and catch typical wrong answers."""

import pytest
import torch

from labsupport import hmm, weather
from labsupport.check import run_check

# ---------------------------------------------------------------------------------------------- 03.1


def xy_views(obs, states):  # y is a view of x's memory: masking y overwrites x
    tokens = torch.cat([obs, states])
    x, y = tokens[:-1], tokens[1:]
    y[: len(obs) - 1] = -100
    return x, y


def xy_mask_all_observations(obs, states):  # masks T targets: loses the first state's target
    x, y = weather.make_xy(obs, states)
    y[: len(obs)] = -100
    return x, y


def xy_no_mask(obs, states):
    tokens = torch.cat([obs, states])
    return tokens[:-1].clone(), tokens[1:].clone()


def xy_mask_with_zero(obs, states):  # 0 is a real token id (clean), not the ignore index
    x, y = weather.make_xy(obs, states)
    y[y == -100] = 0
    return x, y


def xy_not_shifted(obs, states):  # y = the same tokens as x
    x, _ = weather.make_xy(obs, states)
    y = x.clone()
    y[: len(obs) - 1] = -100
    return x, y


def xy_float(obs, states):
    x, y = weather.make_xy(obs, states)
    return x.float(), y.float()


def xy_in_place(obs, states):  # right x and y, but masks the caller's observation tensor on the way
    x = torch.cat([obs, states[:-1]])
    obs[1:] = -100
    return x, torch.cat([obs[1:], states])


# ---------------------------------------------------------------------------------------------- 03.2


def bp_reference(obs, states, proba):
    pi, A, B = proba["initial"], proba["transition"], proba["emission"]
    T = len(obs)
    beta = torch.ones(T, 3, dtype=pi.dtype)
    for t in range(T - 2, -1, -1):
        beta[t] = A @ (B[:, obs[t + 1]] * beta[t + 1])
    q = torch.stack([(pi if t == 0 else A[states[t - 1]]) * B[:, obs[t]] * beta[t] for t in range(T)])
    return q / q.sum(-1, keepdim=True)


def bp_float32(obs, states, proba):  # single precision is fine
    return bp_reference(obs, states, {k: v.float() for k, v in proba.items()}).float()


def bp_no_backward_pass(obs, states, proba):  # ignores the future observations o_t+1:T
    pi, A, B = proba["initial"], proba["transition"], proba["emission"]
    q = torch.stack([(pi if t == 0 else A[states[t - 1]]) * B[:, obs[t]] for t in range(len(obs))])
    return q / q.sum(-1, keepdim=True)


def bp_beta_off_by_one(obs, states, proba):  # uses o_t instead of o_t+1 in the backward step
    pi, A, B = proba["initial"], proba["transition"], proba["emission"]
    T = len(obs)
    beta = torch.ones(T, 3, dtype=torch.float64)
    for t in range(T - 2, -1, -1):
        beta[t] = A @ (B[:, obs[t]] * beta[t + 1])
    q = torch.stack([(pi if t == 0 else A[states[t - 1]]) * B[:, obs[t]] * beta[t] for t in range(T)])
    return q / q.sum(-1, keepdim=True)


def bp_ignores_previous_state(obs, states, proba):  # the initial distribution as prior everywhere
    pi, A, B = proba["initial"], proba["transition"], proba["emission"]
    T = len(obs)
    beta = torch.ones(T, 3, dtype=torch.float64)
    for t in range(T - 2, -1, -1):
        beta[t] = A @ (B[:, obs[t + 1]] * beta[t + 1])
    q = torch.stack([pi * B[:, obs[t]] * beta[t] for t in range(T)])
    return q / q.sum(-1, keepdim=True)


def bp_transposed(obs, states, proba):  # A[s_prev, s] read as A[s, s_prev]
    return bp_reference(obs, states, {**proba, "transition": proba["transition"].T.contiguous()})


def bp_unnormalised(obs, states, proba):
    pi, A, B = proba["initial"], proba["transition"], proba["emission"]
    T = len(obs)
    beta = torch.ones(T, 3, dtype=torch.float64)
    for t in range(T - 2, -1, -1):
        beta[t] = A @ (B[:, obs[t + 1]] * beta[t + 1])
    return torch.stack([(pi if t == 0 else A[states[t - 1]]) * B[:, obs[t]] * beta[t] for t in range(T)])


def bp_vocab_order(obs, states, proba):  # columns rainy, snowy, sunny instead of the table's sunny, rainy, snowy
    return bp_reference(obs, states, proba)[:, [1, 2, 0]]


def bp_forward_filter(obs, states, proba):  # p(s_t | o_1:t): forward filtering, no teacher forcing, no future
    pi, A, B = proba["initial"], proba["transition"], proba["emission"]
    alpha, out = pi * B[:, obs[0]], []
    out.append(alpha / alpha.sum())
    for t in range(1, len(obs)):
        alpha = (out[-1] @ A) * B[:, obs[t]]
        out.append(alpha / alpha.sum())
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------- 03.3


def acc_full_vocab(logits, y):  # argmax over all 8 tokens: observation ids count as (wrong) predictions
    T = (y.shape[1] + 1) // 2
    return (logits[:, T - 1 :].argmax(-1) == y[:, T - 1 :]).double().mean(0)


def acc_forgets_offset(logits, y):  # argmax over 5:8 is 0-2, not a token id
    T = (y.shape[1] + 1) // 2
    return (logits[:, T - 1 :, 5:8].argmax(-1) == y[:, T - 1 :]).double().mean(0)


def acc_all_positions(logits, y):  # counts the masked positions as wrong
    return ((logits[..., 5:8].argmax(-1) + 5) == y).double().mean(0)


def acc_scalar(logits, y):  # the overall accuracy, not per position
    return hmm.per_position_accuracy(logits, y).mean()


def acc_misaligned(logits, y):  # the logit at position t compared with the target one step later
    T = (y.shape[1] + 1) // 2
    pred = logits[:, T - 2 : -1, 5:8].argmax(-1) + 5 if T > 1 else logits[:, :, 5:8].argmax(-1) + 5
    return (pred == y[:, T - 1 :]).double().mean(0)


def acc_over_batch_dim(logits, y):  # mean over positions instead of over the batch
    T = (y.shape[1] + 1) // 2
    hits = ((logits[:, T - 1 :, 5:8].argmax(-1) + 5) == y[:, T - 1 :]).double()
    return hits.mean(1)[:T]


def acc_float32(logits, y):  # any float dtype is fine
    return hmm.per_position_accuracy(logits, y).float()


def not_implemented(*args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------- tests

PASSING = [
    ("03.1", weather.make_xy),
    ("03.2", bp_reference),
    ("03.2", bp_float32),
    ("03.3", hmm.per_position_accuracy),
    ("03.3", acc_float32),
]

WRONG = [
    ("03.1", xy_views, "x ="),
    ("03.1", xy_mask_all_observations, "y ="),
    ("03.1", xy_no_mask, "y ="),
    ("03.1", xy_mask_with_zero, "y ="),
    ("03.1", xy_not_shifted, "y ="),
    ("03.1", xy_float, "dtype"),
    ("03.1", xy_in_place, "changed its inputs"),
    ("03.2", bp_no_backward_pass, "expected"),
    ("03.2", bp_beta_off_by_one, "expected"),
    ("03.2", bp_ignores_previous_state, "expected"),
    ("03.2", bp_transposed, "expected"),
    ("03.2", bp_unnormalised, "rows sum to"),
    ("03.2", bp_vocab_order, "expected"),
    ("03.2", bp_forward_filter, "expected"),
    ("03.3", acc_full_vocab, "expected"),
    ("03.3", acc_forgets_offset, "expected"),
    ("03.3", acc_all_positions, "shape"),
    ("03.3", acc_scalar, "shape"),
    ("03.3", acc_misaligned, "expected"),
    ("03.3", acc_over_batch_dim, "expected"),
]


@pytest.mark.parametrize(("id_", "fn"), PASSING, ids=lambda v: getattr(v, "__name__", v))
def test_reference_passes(id_, fn):
    ok, msg = run_check(id_, fn)
    assert ok, msg


@pytest.mark.parametrize(("id_", "fn", "says"), WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_wrong_answer_fails_with_a_clear_message(id_, fn, says):
    ok, msg = run_check(id_, fn)
    assert not ok and says in msg, msg


@pytest.mark.parametrize("id_", ["03.1", "03.2", "03.3"])
def test_not_implemented_is_reported(id_):
    ok, msg = run_check(id_, not_implemented)
    assert not ok and "not implemented" in msg


def test_checks_are_deterministic():
    assert run_check("03.2", bp_no_backward_pass) == run_check("03.2", bp_no_backward_pass)
    assert run_check("03.3", acc_misaligned) == run_check("03.3", acc_misaligned)
