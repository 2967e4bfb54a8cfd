"""Tests for labsupport.hmm: the Bayes-optimal predictor, its floor, Viterbi and the model-evaluation helpers,
checked against brute-force enumeration of every (observations, states) pair."""

import itertools
import math

import numpy as np
import pytest
import torch

from labsupport import hmm
from labsupport import weather as w

RANDOM = w.random_proba(seed=7)  # no zero entries


def _joint(o, s, p):
    """p(o, s) for proba-index tuples, straight from the HMM definition."""
    pi, A, B = (p[k].tolist() for k in ("initial", "transition", "emission"))
    prob = pi[s[0]] * B[s[0]][o[0]]
    for t in range(1, len(o)):
        prob *= A[s[t - 1]][s[t]] * B[s[t]][o[t]]
    return prob


def _brute(p, T):
    """Joint table over all (o, s), and the brute-force conditional p(s_t | o, s_<t) (proba order) from the masses
    of every (o, state-prefix) pair."""
    table = {(o, s): _joint(o, s, p) for o in itertools.product(range(5), repeat=T)
             for s in itertools.product(range(3), repeat=T)}  # fmt: skip
    mass = {}
    for (o, s), prob in table.items():
        for k in range(T + 1):
            mass[o, s[:k]] = mass.get((o, s[:k]), 0.0) + prob

    def conditional(o, prefix):
        m = [mass[o, (*prefix, k)] for k in range(3)]
        return [v / sum(m) for v in m]

    return table, conditional, mass


def _tokens(o, s):
    return [int(w.OBS_TOKENS[i]) for i in o], [int(w.STATE_TOKENS[i]) for i in s]


# ---- Bayes-optimal prediction and Viterbi ---------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 3])
@pytest.mark.parametrize("proba", [w.FIXED_PROBA, RANDOM], ids=["fixed", "random"])
def test_bayes_floor_equals_brute_force(proba, T):
    p = w.validate_proba(proba)
    table, conditional, mass = _brute(p, T)
    loss, acc = np.zeros(T), np.zeros(T)
    cache = {}
    for (o, s), prob in table.items():
        if prob == 0:
            continue
        for t in range(T):
            q = cache.setdefault((o, s[:t]), conditional(o, s[:t]))
            loss[t] += prob * -math.log(q[s[t]])
            acc[t] += prob * (int(np.argmax(q)) == s[t])
    floor = hmm.bayes_floor(proba, T)
    assert floor.method == "exact"
    np.testing.assert_allclose(floor.loss_per_position, loss, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(floor.accuracy_per_position, acc, rtol=1e-9, atol=1e-12)
    assert floor.loss == pytest.approx(loss.mean(), rel=1e-9) and floor.accuracy == pytest.approx(acc.mean())
    cond_entropy = -sum(v * math.log(v / mass[o, ()]) for (o, _), v in table.items() if v > 0)  # H(S | O)
    assert floor.loss == pytest.approx(cond_entropy / T, rel=1e-9)  # chain rule: sum of the T losses = H(S | O)


def test_bayes_predictive_equals_brute_force():
    p = w.validate_proba(RANDOM)
    table, conditional, _ = _brute(p, 3)
    rng = np.random.default_rng(0)
    keys = list(table)
    for k in rng.choice(len(keys), size=20, replace=False):
        o, s = keys[k]
        got = hmm.bayes_predictive(torch.tensor(o), torch.tensor(s), RANDOM)  # table indices, columns in STATES order
        want = torch.tensor([conditional(o, s[:t]) for t in range(3)], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        obs, states = _tokens(o, s)  # token ids, and names with only T-1 states, through weather.table_indices
        assert w.table_indices(obs, "observation").tolist() == list(o)
        names = w.table_indices([w.OBSERVATIONS[i] for i in o], "observation"), w.table_indices(
            [w.STATES[i] for i in s[:2]], "state")
        torch.testing.assert_close(hmm.bayes_predictive(*names, RANDOM), want, rtol=1e-9, atol=1e-12)
        batch = hmm.bayes_predictive(torch.tensor([o, o]), torch.tensor([s, s]), RANDOM)  # (N, T, 3)
        torch.testing.assert_close(batch, torch.stack([want, want]), rtol=1e-9, atol=1e-12)


def test_monte_carlo_floor_agrees_with_exact():
    exact = hmm.bayes_floor(w.FIXED_PROBA, 4, method="exact")
    mc = hmm.bayes_floor(w.FIXED_PROBA, 4, method="monte-carlo", num_samples=20_000, seed=3)
    assert mc.method == "monte-carlo" and 0 < mc.loss_stderr < 0.01 and 0 < mc.accuracy_stderr < 0.01
    assert abs(mc.loss - exact.loss) < 4 * mc.loss_stderr
    assert abs(mc.accuracy - exact.accuracy) < 4 * mc.accuracy_stderr


def test_viterbi_equals_brute_force_and_accuracy_helpers_agree():
    p = w.validate_proba(RANDOM)
    ds = w.WeatherDataset("test", seq_len=4, num_instances=300, proba=RANDOM)
    per_pos_viterbi, per_pos_bayes = np.zeros(4), np.zeros(4)
    for seq in ds.data.tolist():
        o = [w.TOKEN_TO_INDEX[t] for t in seq[:4]]
        best = max(itertools.product(range(3), repeat=4), key=lambda s: _joint(o, s, p))
        path = hmm.viterbi(seq[:4], RANDOM)
        assert path == _tokens(o, best)[1]
        per_pos_viterbi += np.array(path) == np.array(seq[4:])
        q = hmm.bayes_predictive(w.table_indices(seq[:4], "observation"), w.table_indices(seq[4:], "state"), RANDOM)
        per_pos_bayes += (q[:, w.VOCAB_ORDER].argmax(-1) + 5).numpy() == np.array(seq[4:])
    np.testing.assert_allclose(hmm.viterbi_accuracy(ds), per_pos_viterbi / len(ds))
    np.testing.assert_allclose(hmm.bayes_accuracy(ds), per_pos_bayes / len(ds))


class _Oracle(torch.nn.Module):
    """A 'GPT' whose logits are the log Bayes predictive at the state targets: forward(idx) -> (logits, None)."""

    def __init__(self, proba, T):
        super().__init__()
        self.proba, self.T = proba, T
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        B, L = idx.shape
        logits = torch.full((B, L, 8), -30.0)
        for b in range(B):
            obs, states = w.table_indices(idx[b, : self.T], "observation"), w.table_indices(idx[b, self.T :], "state")
            q = hmm.bayes_predictive(obs, states, self.proba)[:, w.VOCAB_ORDER]  # columns of token ids 5-7
            logits[b, self.T - 1 :, 5:8] = q.clamp_min(1e-12).log().float()
        return logits, None


def test_evaluate_model_accuracy_of_the_oracle_is_bayes_accuracy():
    ds = w.WeatherDataset("test", seq_len=4, num_instances=400, proba=RANDOM)
    model = _Oracle(RANDOM, 4).train()
    acc = hmm.evaluate_model_accuracy(model, ds, device="cpu", batch_size=32)
    assert acc.shape == (4,) and model.training  # training mode restored
    torch.testing.assert_close(acc, hmm.bayes_accuracy(ds))
    assert (acc > hmm.viterbi_accuracy(ds) - 0.05).all()


def test_evaluate_model_loss_of_the_oracle_is_bayes_loss():
    ds = w.WeatherDataset("test", seq_len=4, num_instances=400, proba=RANDOM)
    loss = hmm.evaluate_model_loss(_Oracle(RANDOM, 4), ds, batch_size=64)
    assert loss.shape == (4,)
    torch.testing.assert_close(loss, hmm.bayes_loss(ds), rtol=0, atol=1e-5)  # float32 logits vs float64


def test_bayes_loss_equals_brute_force_on_the_dataset():
    p = w.validate_proba(RANDOM)
    _, conditional, _ = _brute(p, 3)
    ds = w.WeatherDataset("test", seq_len=3, num_instances=300, proba=RANDOM)
    want = np.zeros(3)
    for seq in ds.data.tolist():
        o, s = (tuple(w.TOKEN_TO_INDEX[t] for t in part) for part in (seq[:3], seq[3:]))
        want += [-math.log(conditional(o, s[:t])[s[t]]) for t in range(3)]
    np.testing.assert_allclose(hmm.bayes_loss(ds), want / len(ds), rtol=1e-9)
    floor = hmm.bayes_floor(RANDOM, 3)  # the dataset's loss is a sample of the floor's expectation
    assert abs(hmm.bayes_loss(ds).mean().item() - floor.loss) < 0.1


def test_per_position_accuracy_takes_the_argmax_over_state_ids_at_the_last_T_positions():
    T, ignore = 3, w.IGNORE_INDEX
    logits = torch.zeros(2, 2 * T - 1, 8)
    logits[:, :, 0] = 9.0  # an observation token wins over all 8 ids; it must not count as a prediction
    logits[0, 2:, 5:8] = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0], [2.0, 2.0, 1.0]])  # row 3: a tie -> 5
    logits[1, 2:, 5:8] = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    logits[:, : T - 1, 5] = 50.0  # masked positions must be ignored
    y = torch.tensor([[ignore, ignore, 6, 7, 5], [ignore, ignore, 7, 6, 6]])
    acc = hmm.per_position_accuracy(logits, y)
    assert acc.dtype == torch.float64
    torch.testing.assert_close(acc, torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="need logits"):
        hmm.per_position_accuracy(logits[0], y[0])


# ---- bad arguments --------------------------------------------------------------------------------------------


def test_bad_function_arguments():
    with pytest.raises(ValueError, match="'cloudy' is not a state"):
        w.table_indices(["sunny", "cloudy"], "state")
    with pytest.raises(ValueError, match="obs must hold indices into OBSERVATIONS .*weather.table_indices"):
        hmm.bayes_predictive([4, 7], [0, 1], w.FIXED_PROBA)
    with pytest.raises(ValueError, match="5 is not an observation"):
        hmm.viterbi([5, 1], w.FIXED_PROBA)
    with pytest.raises(ValueError, match="3 observations and 1 states"):
        hmm.bayes_predictive([0, 1, 2], [2], w.FIXED_PROBA)
    with pytest.raises(ValueError, match="probability 0 under proba .at state position 1"):
        hmm.bayes_predictive([0, 3], [0, 2], w.FIXED_PROBA)  # walk, tennis; sunny never -> snowy
    with pytest.raises(ValueError, match="unknown method"):
        hmm.bayes_floor(w.FIXED_PROBA, 3, method="sampling")
    with pytest.raises(ValueError, match="too long"):
        hmm.bayes_floor(w.FIXED_PROBA, 10, method="exact")
    with pytest.raises(ValueError, match="has no .proba"):
        hmm.bayes_accuracy(torch.utils.data.TensorDataset(torch.zeros(2, 3, dtype=torch.long)))


def test_accuracy_helpers_accept_any_dataset_of_items_with_explicit_proba():
    ds = w.WeatherDataset("test", seq_len=3, num_instances=300, proba=RANDOM)
    subset = torch.utils.data.Subset(ds, range(len(ds)))  # no .data / .proba: items are rebuilt from (x, y)
    torch.testing.assert_close(hmm.bayes_accuracy(subset, proba=RANDOM), hmm.bayes_accuracy(ds))
    torch.testing.assert_close(hmm.viterbi_accuracy(subset, proba=RANDOM), hmm.viterbi_accuracy(ds))
