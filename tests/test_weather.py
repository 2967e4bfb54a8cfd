"""Tests for labsupport.weather: the HMM dataset's token layout, sampling statistics, and split/determinism
guarantees (exact inference is tested in test_hmm.py)."""

import hashlib
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


# ---- vocabulary and layout ------------------------------------------------------------------------------------


def test_vocabulary_ids_and_decoding():
    assert w.VOCAB == ("clean", "read", "shop", "tennis", "walk", "rainy", "snowy", "sunny")
    assert w.decode_obs([0, 1, 2, 3, 4]) == ["clean", "read", "shop", "tennis", "walk"]
    assert w.decode_st(torch.tensor([5, 6, 7])) == ["rainy", "snowy", "sunny"]
    assert w.WeatherDataset.decode_st([7]) == ["sunny"]
    # proba order -> token id: walk=4, shop=2, clean=0, tennis=3, read=1; sunny=7, rainy=5, snowy=6
    assert w.OBS_TOKENS.tolist() == [4, 2, 0, 3, 1] and w.STATE_TOKENS.tolist() == [7, 5, 6]
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
    for i in range(3):
        want_x, want_y = w.make_xy(ds.data[i, :T], ds.data[i, T:])
        assert torch.equal(ds[i][0], want_x) and torch.equal(ds[i][1], want_y)


def test_batched_getitems_equals_items_and_feeds_the_dataloader():
    ds = w.WeatherDataset("train", seq_len=4, num_instances=300, proba=w.FIXED_PROBA)
    idx = [5, 0, 5, len(ds) - 1]
    for (x, y), (want_x, want_y) in zip(ds.__getitems__(idx), [ds[i] for i in idx]):
        assert torch.equal(x, want_x) and torch.equal(y, want_y)
    xb, yb = next(iter(DataLoader(ds, batch_size=8)))  # the DataLoader takes the batched path
    assert torch.equal(xb, torch.stack([ds[i][0] for i in range(8)]))
    assert torch.equal(yb, torch.stack([ds[i][1] for i in range(8)]))
    items = ds.__getitems__([1, 2])
    items[0][1][:] = 0  # a returned target must not alias the inputs or the dataset
    assert torch.equal(items[0][0], ds[1][0]) and torch.equal(items[1][1], ds[2][1]) and (ds[1][1][3:] >= 5).all()


def test_make_xy_shifts_and_masks_the_observation_targets():
    x, y = w.make_xy([4, 2, 0], torch.tensor([7, 5, 6]))
    assert x.tolist() == [4, 2, 0, 7, 5] and y.tolist() == [-100, -100, 7, 5, 6]
    assert x.dtype == y.dtype == torch.long
    y[-1] = 0  # x and y must not share memory
    assert x.tolist() == [4, 2, 0, 7, 5]
    x1, y1 = w.make_xy([1], [5])  # T = 1: nothing to mask
    assert x1.tolist() == [1] and y1.tolist() == [5]
    with pytest.raises(ValueError, match="2 observations and 3 states"):
        w.make_xy([0, 1], [5, 6, 7])


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
    obs, st = w.split_tokens(w.sample_sequences(p, 5, range(20_000), seed=1))
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
