"""Lab 03's toy task: a weather hidden Markov model (HMM) turned into a next-token dataset.

The weather (hidden state) follows a Markov chain and each day emits one activity (observation).
A sample is T observations followed by the T states; a GPT learns to predict the states:

    tokens  o_1 ... o_T  s_1 ... s_T               2T tokens; x = tokens[:-1], y = tokens[1:]
    y       -100 ... -100 s_1 ... s_T              only the T state targets are supervised

Two orders, kept apart on purpose:
- vocabulary ids (what the model reads and emits): observations sorted alphabetically 0-4 (clean, read,
  shop, tennis, walk), states sorted alphabetically 5-7 (rainy, snowy, sunny). Functions here and in
  labsupport.hmm return states as token ids and state probabilities in vocabulary order: columns rainy,
  snowy, sunny, which line up with ``logits[..., 5:8]``.
- proba tables (how the HMM is written down): rows/columns follow STATES = (sunny, rainy, snowy) and
  OBSERVATIONS = (walk, shop, clean, tennis, read).

Exact inference on this HMM (the Bayes-optimal predictor, its loss floor, Viterbi) lives in labsupport.hmm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from labsupport.core import IGNORE_INDEX

STATES = ("sunny", "rainy", "snowy")  # proba row order
OBSERVATIONS = ("walk", "shop", "clean", "tennis", "read")  # proba emission column order
VOCAB = tuple(sorted(OBSERVATIONS)) + tuple(sorted(STATES))  # token id -> name
STATE_IDS = (5, 6, 7)  # rainy, snowy, sunny: the columns of every returned state distribution
FIXED_PROBA = {
    "initial": [0.5, 0.3, 0.2],
    "transition": [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]],
    "emission": [[0.5, 0.0, 0.2, 0.0, 0.3], [0.0, 0.5, 0.4, 0.0, 0.1], [0.0, 0.0, 0.1, 0.5, 0.4]],
}
_SHAPES = {"initial": (3,), "transition": (3, 3), "emission": (3, 5)}
OBS_TOKENS = np.array([VOCAB.index(o) for o in OBSERVATIONS])  # table index (OBSERVATIONS order) -> token id
STATE_TOKENS = np.array([VOCAB.index(s) for s in STATES])  # table index (STATES order) -> token id
TOKEN_TO_INDEX = {int(t): i for i, t in enumerate(OBS_TOKENS)} | {int(t): i for i, t in enumerate(STATE_TOKENS)}
VOCAB_ORDER = [STATES.index(VOCAB[t]) for t in STATE_IDS]  # q[..., VOCAB_ORDER]: STATES order -> vocabulary order
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def validate_proba(proba: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Check an HMM table dict and return it as float64 tensors (copies)."""
    if not isinstance(proba, Mapping) or set(_SHAPES) - set(proba):
        got = sorted(proba) if isinstance(proba, Mapping) else type(proba).__name__
        raise ValueError(f"proba needs keys 'initial', 'transition', 'emission'; got {got}")
    out = {}
    for key, shape in _SHAPES.items():
        t = torch.as_tensor(proba[key], dtype=torch.float64).clone()
        if tuple(t.shape) != shape:
            raise ValueError(f"proba[{key!r}] has shape {tuple(t.shape)}, expected {shape} (rows {STATES})")
        if not torch.isfinite(t).all() or (t < 0).any():
            raise ValueError(f"proba[{key!r}] has negative or non-finite entries: probabilities must be >= 0")
        sums = t.reshape(-1, shape[-1]).sum(-1)
        bad = torch.nonzero((sums - 1).abs() > 1e-6).flatten()
        if len(bad):
            row, total = int(bad[0]), float(sums[bad[0]])
            raise ValueError(f"proba[{key!r}] row {row} sums to {total:.4f}, not 1: each row must be a distribution")
        out[key] = t
    return out


def random_proba(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random HMM tables (each row drawn from a flat Dirichlet), reproducible from `seed`."""
    rng = np.random.default_rng([check_int("seed", seed, 0), 3])
    return validate_proba({k: rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]) for k, shape in _SHAPES.items()})


def check_int(name: str, value: Any, minimum: int) -> int:
    """`value` as an int, or a ValueError naming `name` when it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a bijective scrambler of uint64 arrays (arithmetic wraps mod 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, indices: np.ndarray, n: int) -> np.ndarray:
    """(len(indices), n) uniforms in [0, 1) that depend only on (seed, index): a counter-based generator,
    so sample i is the same in every process and DataLoader worker, whatever else is generated."""
    with np.errstate(over="ignore"):
        key = _mix64(_mix64(np.full(len(indices), seed, np.uint64)) + indices.astype(np.uint64) * _GOLDEN)
        z = _mix64(key[:, None] + (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :])
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _cdf(probs: np.ndarray) -> np.ndarray:
    """Row-wise CDFs, exactly 1 from each row's last non-zero entry on, so u < 1 never picks a 0-probability tail."""
    cdf = np.cumsum(probs, -1)
    last = probs.shape[-1] - 1 - np.argmax(probs[..., ::-1] > 0, -1)
    cdf[np.arange(probs.shape[-1]) >= last[..., None]] = 1.0
    return cdf


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return (cdf <= u[..., None]).sum(-1)  # inverse-CDF sampling; zero-width bins are never chosen


def sample_sequences(proba: Mapping[str, Any], seq_len: int, indices: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Token ids (len(indices), 2*seq_len) = observations then states; row i depends only on (seed, indices[i])."""
    p = {k: v.numpy() for k, v in validate_proba(proba).items()}
    T, seed = check_int("seq_len", seq_len, 1), check_int("seed", seed, 0)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if (idx < 0).any():
        raise ValueError("indices must be >= 0")
    u = _uniforms(seed, idx, 2 * T)  # u[:, :T] draws states, u[:, T:] draws observations
    cdf_a = _cdf(p["transition"])
    st = np.empty((len(idx), T), dtype=np.int64)
    st[:, 0] = _draw(_cdf(p["initial"])[None], u[:, 0])
    for t in range(1, T):
        st[:, t] = _draw(cdf_a[st[:, t - 1]], u[:, t])
    obs = _draw(_cdf(p["emission"])[st], u[:, T:])  # (N, T)
    return torch.from_numpy(np.concatenate([OBS_TOKENS[obs], STATE_TOKENS[st]], axis=1))


def _in_test(tokens: Sequence[int], test_fraction: float) -> bool:
    """Content-based split: a sequence lands in the same split in every process, run and seed (no leakage)."""
    digest = hashlib.blake2b(bytes(tokens), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < test_fraction


def _names(ids: Any, allowed: Sequence[int], kind: str) -> list[str]:
    ids = ids.tolist() if isinstance(ids, torch.Tensor | np.ndarray) else list(ids)
    bad = [i for i in ids if i not in allowed]
    if bad:
        raise ValueError(f"{bad[0]!r} is not {kind} token id; those are {list(allowed)}")
    return [VOCAB[i] for i in ids]


def decode_obs(ids: Any) -> list[str]:
    """Observation token ids (0-4) -> names."""
    return _names(ids, range(5), "an observation")


def decode_st(ids: Any) -> list[str]:
    """State token ids (5-7) -> names."""
    return _names(ids, STATE_IDS, "a state")


def make_xy(obs: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One training example: T observation and T state token ids -> (x, y), each (2T-1,) long.

    x = tokens[:-1] and y = tokens[1:] of tokens = obs + states; the first T-1 targets (observations, which are
    given, not predicted) are IGNORE_INDEX, so the loss covers exactly the T states."""
    obs, states = torch.as_tensor(obs).long().reshape(-1), torch.as_tensor(states).long().reshape(-1)
    if len(obs) < 1 or len(obs) != len(states):
        raise ValueError(f"got {len(obs)} observations and {len(states)} states: pass T >= 1 of each")
    tokens = torch.cat([obs, states])  # (2T,)
    x, y = tokens[:-1], tokens[1:].clone()
    y[: len(obs) - 1] = IGNORE_INDEX
    return x, y


def split_tokens(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2T) token ids (observations, then states) -> (obs, states) table indices, each (N, T)."""
    lut = torch.tensor([TOKEN_TO_INDEX[t] for t in range(len(VOCAB))])
    T = tokens.shape[1] // 2
    return lut[tokens[:, :T]], lut[tokens[:, T:]]


def table_indices(seq: Any, kind: str) -> torch.Tensor:
    """Names or token ids of observations (`kind="observation"`) or states (`kind="state"`) -> table indices
    (positions in OBSERVATIONS or STATES), a 1-D long tensor."""
    if kind not in ("observation", "state"):
        raise ValueError(f"kind must be 'observation' or 'state', got {kind!r}")
    names, tokens = (OBSERVATIONS, OBS_TOKENS) if kind == "observation" else (STATES, STATE_TOKENS)
    items = seq.tolist() if isinstance(seq, torch.Tensor | np.ndarray) else list(seq)
    out = []
    for item in items:
        if isinstance(item, str) and item in names:
            out.append(names.index(item))
        elif not isinstance(item, str) and int(item) in tokens:
            out.append(TOKEN_TO_INDEX[int(item)])
        else:
            raise ValueError(f"{item!r} is not a{'n' if kind == 'observation' else ''} {kind}: use names "
                             f"{tuple(names)} or token ids {tokens.tolist()}")
    return torch.tensor(out, dtype=torch.long)


class WeatherDataset(Dataset):
    """Map-style dataset of HMM sequences; items are (x, y) long tensors of length 2*seq_len - 1.

    Generates `num_instances` samples (sample i depends only on (seed, i)) and keeps those whose content hashes
    into `split`, so train and test never share a sequence. Pass ``proba=train.proba`` to the test split when
    proba was random (the same seed gives the same tables anyway)."""

    def __init__(self, split: str, seq_len: int = 6, num_instances: int = 10000,
                 proba: Mapping[str, Any] | None = None, seed: int = 0, test_fraction: float = 0.2) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
        check_int("num_instances", num_instances, 1)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        self.split, self.seq_len, self.seed = split, check_int("seq_len", seq_len, 1), check_int("seed", seed, 0)
        self.proba = random_proba(seed) if proba is None else validate_proba(proba)
        pool = sample_sequences(self.proba, self.seq_len, np.arange(num_instances), seed)  # (num_instances, 2T)
        in_test = torch.tensor([_in_test(row, test_fraction) for row in pool.tolist()], dtype=torch.bool)
        self.ids = torch.nonzero(in_test if split == "test" else ~in_test).flatten()  # pool indices of this split
        if len(self.ids) == 0:
            raise ValueError(f"split {split!r} is empty with num_instances={num_instances}: generate more instances")
        self.data = pool[self.ids]  # (len, 2T) token ids: observations then states

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = self.data[i]  # (2T,); make_xy(seq[:T], seq[T:]) without its checks (this runs per item)
        x, y = seq[:-1].clone(), seq[1:].clone()  # (2T-1,) each, fresh: callers may mutate them
        y[: self.seq_len - 1] = IGNORE_INDEX  # observations are given, not predicted
        return x, y

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[self[i] for i in indices] in one gather. DataLoader calls it for a whole batch when it exists: a batch
        of 64 then costs ~0.4 ms instead of ~1.2 ms on CPU, a tenth of a gpt-nano training step."""
        seq = self.data[torch.as_tensor(indices, dtype=torch.long)]  # (B, 2T)
        x, y = seq[:, :-1], seq[:, 1:].clone()  # x and y in separate memory
        y[:, : self.seq_len - 1] = IGNORE_INDEX
        return list(zip(x, y))

    def get_vocab_size(self) -> int:
        return len(VOCAB)

    def get_block_size(self) -> int:
        return 2 * self.seq_len - 1

    decode_obs = staticmethod(decode_obs)
    decode_st = staticmethod(decode_st)
