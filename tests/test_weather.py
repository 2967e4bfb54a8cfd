"""Tests for labsupport.weather: HMM sampling, split/determinism guarantees, and the Bayes/Viterbi references,
checked against brute-force enumeration."""

import hashlib
import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from labsupport import weather as w

RANDOM = w.random_proba(seed=7)  # no zero entries
CHI2_999 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467}  # chi-square critical values at p = 0.001


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
    return [int(w._OBS_TOKEN[i]) for i in o], [int(w._ST_TOKEN[i]) for i in s]


# ---- vocabulary and layout ------------------------------------------------------------------------------------


def test_vocabulary_ids_and_decoding():
    assert w.VOCAB == ("clean", "read", "shop", "tennis", "walk", "rainy", "snowy", "sunny")
    assert w.decode_obs([0, 1, 2, 3, 4]) == ["clean", "read", "shop", "tennis", "walk"]
    assert w.decode_st(torch.tensor([5, 6, 7])) == ["rainy", "snowy", "sunny"]
    assert w.WeatherDataset.decode_st([7]) == ["sunny"]
    # proba order -> token id: walk=4, shop=2, clean=0, tennis=3, read=1; sunny=7, rainy=5, snowy=6
    assert w._OBS_TOKEN.tolist() == [4, 2, 0, 3, 1] and w._ST_TOKEN.tolist() == [7, 5, 6]
    with pytest.raises(ValueError, match="not a state token id"):
        w.decode_st([4])
    with pytest.raises(ValueError, match="not an observation token id"):
        w.decode_obs([5])


@pytest.mark.parametrize("T", [1, 4])
def test_item_layout_and_masking(T):
    ds = w.WeatherDataset("train", seq_len=T, num_instances=200, proba=w.FIXED_PROBA)
    assert ds.get_vocab_size() == 8 and ds.get_block_size() == 2 * T - 1
    for i in range(len(ds)):
        x, y = ds[i]
        seq = ds.data[i]
        assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (2 * T - 1,)
        assert torch.equal(x, seq[:-1]) and torch.equal(y[T - 1 :], seq[T:])
        assert (y[: T - 1] == w.IGNORE_INDEX).all()
        assert (seq[:T] <= 4).all() and (seq[T:] >= 5).all()
    x, y = ds[0]
    y[:] = 0  # items are copies: mutating one must not corrupt the dataset
    assert (ds[0][1][T - 1 :] >= 5).all()


# ---- sampling statistics ------------------------------------------------------------------------------------


def _chi2_ok(counts, probs, what):
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    assert counts[probs == 0].sum() == 0, f"{what}: a zero-probability outcome was sampled"
    keep = probs > 0
    if keep.sum() < 2:
        return
    expected = counts.sum() * probs[keep]
    stat = ((counts[keep] - expected) ** 2 / expected).sum()
    assert stat < CHI2_999[int(keep.sum()) - 1], f"{what}: chi-square {stat:.1f} for counts {counts}, probs {probs}"


@pytest.mark.parametrize("proba", [w.FIXED_PROBA, RANDOM], ids=["fixed", "random"])
def test_sampling_matches_proba(proba):
    p = w.validate_proba(proba)
    obs, st = w._split_tokens(w.sample_sequences(p, 5, range(20_000), seed=1))
    _chi2_ok(np.bincount(st[:, 0], minlength=3), p["initial"], "initial")
    for a in range(3):
        prev = st[:, :-1] == a
        _chi2_ok(np.bincount(st[:, 1:][prev], minlength=3), p["transition"][a], f"transition from {w.STATES[a]}")
        _chi2_ok(np.bincount(obs[st == a], minlength=5), p["emission"][a], f"emission of {w.STATES[a]}")


def test_inverse_cdf_never_draws_a_zero_probability_tail():
    probs = np.array([[0.7, 0.2, 0.1, 0.0], [0.0, 0.0, 1.0, 0.0]])  # 0.7 + 0.2 + 0.1 rounds to 1 - 2**-53
    u = np.array([[0.0, 1 - 2**-53], [0.0, 1 - 2**-53]])
    assert w._draw(w._cdf(probs)[:, None], u).tolist() == [[0, 2], [2, 2]]


def test_random_proba_is_seeded_and_shared_by_splits():
    assert all(torch.equal(w.random_proba(3)[k], w.random_proba(3)[k]) for k in w._SHAPES)
    assert not torch.equal(w.random_proba(3)["emission"], w.random_proba(4)["emission"])
    train = w.WeatherDataset("train", num_instances=300, seed=3)
    test = w.WeatherDataset("test", num_instances=300, proba=train.proba, seed=3)
    assert all(torch.equal(train.proba[k], test.proba[k]) for k in w._SHAPES)
    assert all(torch.equal(train.proba[k], w.WeatherDataset("test", num_instances=300, seed=3).proba[k])
               for k in w._SHAPES)  # fmt: skip


# ---- determinism, splits, workers -----------------------------------------------------------------------------


def test_samples_deterministic_per_seed_and_index():
    many = w.sample_sequences(w.FIXED_PROBA, 6, range(50), seed=5)
    assert torch.equal(w.sample_sequences(w.FIXED_PROBA, 6, [17, 3], seed=5), many[[17, 3]])
    assert not torch.equal(w.sample_sequences(w.FIXED_PROBA, 6, range(50), seed=6), many)
    assert len({tuple(r) for r in many.tolist()}) > 40  # distinct indices give (mostly) distinct samples
    small = w.WeatherDataset("train", num_instances=100, proba=w.FIXED_PROBA, seed=5)
    big = w.WeatherDataset("train", num_instances=300, proba=w.FIXED_PROBA, seed=5)
    assert torch.equal(big.ids[: len(small)], small.ids) and torch.equal(big.data[: len(small)], small.data)
    assert torch.equal(small.data[small.ids < 50], many[small.ids[small.ids < 50]])


def test_split_is_a_disjoint_content_partition():
    train = w.WeatherDataset("train", num_instances=2000, proba=w.FIXED_PROBA)
    test = w.WeatherDataset("test", num_instances=2000, proba=w.FIXED_PROBA)
    assert sorted(train.ids.tolist() + test.ids.tolist()) == list(range(2000))
    assert 0.1 < len(test) / 2000 < 0.3
    assert not {tuple(r) for r in train.data.tolist()} & {tuple(r) for r in test.data.tolist()}
    other_seed = w.WeatherDataset("test", num_instances=2000, proba=w.FIXED_PROBA, seed=1)  # still never in train
    assert not {tuple(r) for r in train.data.tolist()} & {tuple(r) for r in other_seed.data.tolist()}


_FINGERPRINT = (
    "import hashlib; from labsupport import weather as w\n"
    "h = hashlib.sha256()\n"
    "for split in ('train', 'test'):\n"
    "    ds = w.WeatherDataset(split, num_instances=500, seed=2)\n"
    "    h.update(ds.ids.numpy().tobytes()); h.update(ds.data.numpy().tobytes())\n"
    "print(h.hexdigest())\n"
)


def test_split_reproducible_across_processes():
    digests = []
    for hash_seed in ("1", "2"):  # Python's str hash() salt must not matter
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        run = subprocess.run([sys.executable, "-c", _FINGERPRINT], env=env, capture_output=True, text=True, check=True)
        digests.append(run.stdout.strip())
    h = hashlib.sha256()
    for split in ("train", "test"):
        ds = w.WeatherDataset(split, num_instances=500, seed=2)
        h.update(ds.ids.numpy().tobytes())
        h.update(ds.data.numpy().tobytes())
    assert digests == [h.hexdigest()] * 2


def test_dataloader_workers_yield_the_same_items():
    ds = w.WeatherDataset("train", num_instances=200, proba=w.FIXED_PROBA)

    def collect(workers):
        loader = DataLoader(ds, batch_size=16, num_workers=workers, shuffle=False)
        xs, ys = zip(*loader)
        return torch.cat(xs), torch.cat(ys)

    (x0, y0), (x2, y2) = collect(0), collect(2)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)


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
    floor = w.bayes_floor(proba, T)
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
        obs, states = _tokens(o, s)
        got = w.bayes_predictive(obs, states, RANDOM)  # columns rainy, snowy, sunny
        want = torch.tensor([conditional(o, s[:t]) for t in range(3)], dtype=torch.float64)[:, w._VOCAB_ORDER]
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        names = [w.OBSERVATIONS[i] for i in o], [w.STATES[i] for i in s[:2]]  # names, and only T-1 states
        torch.testing.assert_close(w.bayes_predictive(*names, RANDOM), want, rtol=1e-9, atol=1e-12)


def test_monte_carlo_floor_agrees_with_exact():
    exact = w.bayes_floor(w.FIXED_PROBA, 4, method="exact")
    mc = w.bayes_floor(w.FIXED_PROBA, 4, method="monte-carlo", num_samples=20_000, seed=3)
    assert mc.method == "monte-carlo" and 0 < mc.loss_stderr < 0.01 and 0 < mc.accuracy_stderr < 0.01
    assert abs(mc.loss - exact.loss) < 4 * mc.loss_stderr
    assert abs(mc.accuracy - exact.accuracy) < 4 * mc.accuracy_stderr


def test_viterbi_equals_brute_force_and_accuracy_helpers_agree():
    p = w.validate_proba(RANDOM)
    ds = w.WeatherDataset("test", seq_len=4, num_instances=300, proba=RANDOM)
    per_pos_viterbi, per_pos_bayes = np.zeros(4), np.zeros(4)
    for seq in ds.data.tolist():
        o = [w._TOKEN_TO_IDX[t] for t in seq[:4]]
        best = max(itertools.product(range(3), repeat=4), key=lambda s: _joint(o, s, p))
        path = w.viterbi(seq[:4], RANDOM)
        assert path == _tokens(o, best)[1]
        per_pos_viterbi += np.array(path) == np.array(seq[4:])
        q = w.bayes_predictive(seq[:4], seq[4:], RANDOM)
        per_pos_bayes += (q.argmax(-1) + 5).numpy() == np.array(seq[4:])
    np.testing.assert_allclose(w.viterbi_accuracy(ds), per_pos_viterbi / len(ds))
    np.testing.assert_allclose(w.bayes_accuracy(ds), per_pos_bayes / len(ds))


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
            q = w.bayes_predictive(idx[b, : self.T], idx[b, self.T :], self.proba)
            logits[b, self.T - 1 :, 5:8] = q.clamp_min(1e-12).log().float()
        return logits, None


def test_evaluate_model_accuracy_of_the_oracle_is_bayes_accuracy():
    ds = w.WeatherDataset("test", seq_len=4, num_instances=400, proba=RANDOM)
    model = _Oracle(RANDOM, 4).train()
    acc = w.evaluate_model_accuracy(model, ds, device="cpu", batch_size=32)
    assert acc.shape == (4,) and model.training  # training mode restored
    torch.testing.assert_close(acc, w.bayes_accuracy(ds))
    assert (acc > w.viterbi_accuracy(ds) - 0.05).all()


# ---- bad arguments --------------------------------------------------------------------------------------------


def _rows(**over):
    return {**{k: np.array(v, dtype=float) for k, v in w.FIXED_PROBA.items()}, **over}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 0}, "seq_len must be an int >= 1"),
        ({"seq_len": 2.5}, "seq_len must be an int >= 1"),
        ({"split": "val"}, "unknown split 'val'"),
        ({"num_instances": 0}, "num_instances must be an int >= 1"),
        ({"seed": -1}, "seed must be"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"proba": _rows(transition=[[0.5, 0.4, 0.0], [0, 0.5, 0.5], [0.5, 0, 0.5]])}, r"'transition'\] row 0 sums"),
        ({"proba": _rows(initial=[0.5, 0.5, 0.5])}, r"'initial'\] row 0 sums to 1.5000"),
        ({"proba": _rows(emission=np.ones((3, 4)) / 4)}, r"shape \(3, 4\), expected \(3, 5\)"),
        ({"proba": _rows(initial=[1.5, -0.5, 0.0])}, "negative"),
        ({"proba": {"initial": [1, 0, 0]}}, "proba needs keys"),
    ],
)
def test_bad_dataset_arguments(kwargs, match):
    args = {"split": "train", "num_instances": 50, "proba": w.FIXED_PROBA, **kwargs}
    with pytest.raises(ValueError, match=match):
        w.WeatherDataset(**args)


def test_empty_split_is_an_error():
    first_in_test = w._in_test(w.sample_sequences(w.FIXED_PROBA, 6, [0])[0].tolist(), 0.2)
    with pytest.raises(ValueError, match="is empty with num_instances=1"):
        w.WeatherDataset("train" if first_in_test else "test", num_instances=1, proba=w.FIXED_PROBA)


def test_bad_function_arguments():
    with pytest.raises(ValueError, match="'cloudy' is not a state"):
        w.bayes_predictive(["walk", "shop"], ["sunny", "cloudy"], w.FIXED_PROBA)
    with pytest.raises(ValueError, match="5 is not an observation"):
        w.viterbi([5, 1], w.FIXED_PROBA)
    with pytest.raises(ValueError, match="3 observations and 1 states"):
        w.bayes_predictive([0, 1, 2], [7], w.FIXED_PROBA)
    with pytest.raises(ValueError, match="probability 0 under proba .at state position 1"):
        w.bayes_predictive(["walk", "tennis"], ["sunny", "snowy"], w.FIXED_PROBA)  # only sunny walks, can't reach snowy
    with pytest.raises(ValueError, match="unknown method"):
        w.bayes_floor(w.FIXED_PROBA, 3, method="sampling")
    with pytest.raises(ValueError, match="too long"):
        w.bayes_floor(w.FIXED_PROBA, 10, method="exact")
    with pytest.raises(ValueError, match="has no .proba"):
        w.bayes_accuracy(torch.utils.data.TensorDataset(torch.zeros(2, 3, dtype=torch.long)))


def test_accuracy_helpers_accept_any_dataset_of_items_with_explicit_proba():
    ds = w.WeatherDataset("test", seq_len=3, num_instances=300, proba=RANDOM)
    subset = torch.utils.data.Subset(ds, range(len(ds)))  # no .data / .proba: items are rebuilt from (x, y)
    torch.testing.assert_close(w.bayes_accuracy(subset, proba=RANDOM), w.bayes_accuracy(ds))
    torch.testing.assert_close(w.viterbi_accuracy(subset, proba=RANDOM), w.viterbi_accuracy(ds))
