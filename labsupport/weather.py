"""Lab 03's toy task: a weather hidden Markov model (HMM) turned into a next-token dataset.

The weather (hidden state) follows a Markov chain and each day emits one activity (observation).
A sample is T observations followed by the T states; a GPT learns to predict the states:

    tokens  o_1 ... o_T  s_1 ... s_T               2T tokens; x = tokens[:-1], y = tokens[1:]
    y       -100 ... -100 s_1 ... s_T              only the T state targets are supervised

Two orders, kept apart on purpose:
- vocabulary ids (what the model reads and emits): observations sorted alphabetically 0-4 (clean, read,
  shop, tennis, walk), states sorted alphabetically 5-7 (rainy, snowy, sunny). Functions here return
  states as token ids and state probabilities in vocabulary order: columns rainy, snowy, sunny, which
  line up with ``logits[..., 5:8]``.
- proba tables (how the HMM is written down): rows/columns follow STATES = (sunny, rainy, snowy) and
  OBSERVATIONS = (walk, shop, clean, tennis, read).

Bayes-optimal prediction: with teacher forcing the model predicts s_t from o_1:T and s_1:t-1. By the
Markov property p(s_t | o_1:T, s_1:t-1) = p(s_t | s_t-1, o_t:T) ∝ P(s_t | s_t-1) B(o_t | s_t) beta_t(s_t),
where beta_t(s) = p(o_t+1:T | s_t = s) comes from a backward pass. Its cross-entropy is a floor no model
can beat on average.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

STATES = ("sunny", "rainy", "snowy")  # proba row order
OBSERVATIONS = ("walk", "shop", "clean", "tennis", "read")  # proba emission column order
VOCAB = tuple(sorted(OBSERVATIONS)) + tuple(sorted(STATES))  # token id -> name
STATE_IDS = (5, 6, 7)  # rainy, snowy, sunny: the columns of every returned state distribution
IGNORE_INDEX = -100
FIXED_PROBA = {
    "initial": [0.5, 0.3, 0.2],
    "transition": [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]],
    "emission": [[0.5, 0.0, 0.2, 0.0, 0.3], [0.0, 0.5, 0.4, 0.0, 0.1], [0.0, 0.0, 0.1, 0.5, 0.4]],
}
_SHAPES = {"initial": (3,), "transition": (3, 3), "emission": (3, 5)}
_OBS_TOKEN = np.array([VOCAB.index(o) for o in OBSERVATIONS])  # proba column -> token id
_ST_TOKEN = np.array([VOCAB.index(s) for s in STATES])  # proba row -> token id
_TOKEN_TO_IDX = {int(t): i for i, t in enumerate(_OBS_TOKEN)} | {int(t): i for i, t in enumerate(_ST_TOKEN)}
_VOCAB_ORDER = [STATES.index(VOCAB[t]) for t in STATE_IDS]  # proba order -> vocabulary order
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
    rng = np.random.default_rng([_check_int("seed", seed, 0), 3])
    return validate_proba({k: rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]) for k, shape in _SHAPES.items()})


def _check_int(name: str, value: Any, minimum: int) -> int:
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
    T, seed = _check_int("seq_len", seq_len, 1), _check_int("seed", seed, 0)
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
    return torch.from_numpy(np.concatenate([_OBS_TOKEN[obs], _ST_TOKEN[st]], axis=1))


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


def _to_idx(seq: Any, names: Sequence[str], tokens: np.ndarray, kind: str) -> torch.Tensor:
    """Names or token ids -> proba indices (1-D long tensor)."""
    items = seq.tolist() if isinstance(seq, torch.Tensor | np.ndarray) else list(seq)
    out = []
    for item in items:
        if isinstance(item, str) and item in names:
            out.append(names.index(item))
        elif not isinstance(item, str) and int(item) in tokens:
            out.append(_TOKEN_TO_IDX[int(item)])
        else:
            raise ValueError(f"{item!r} is not {kind}: use names {tuple(names)} or token ids {tokens.tolist()}")
    return torch.tensor(out, dtype=torch.long)


def _split_tokens(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2T) token ids -> (obs, states) proba indices, each (N, T)."""
    lut = torch.tensor([_TOKEN_TO_IDX[t] for t in range(len(VOCAB))])
    T = tokens.shape[1] // 2
    return lut[tokens[:, :T]], lut[tokens[:, T:]]


def _predictive(obs: torch.Tensor, st: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """p(s_t | s_t-1, o_t:T) for a batch: obs, st (N, T) proba indices -> (N, T, 3), proba order, NaN if impossible."""
    A, N, T = p["transition"], obs.shape[0], obs.shape[1]
    emis = p["emission"][:, obs].permute(1, 2, 0)  # (N, T, S): B(o_t | s)
    beta = torch.ones(N, T, 3, dtype=torch.float64)  # beta_t(s) up to a per-t scale (the scale cancels below)
    for t in range(T - 2, -1, -1):
        b = (emis[:, t + 1] * beta[:, t + 1]) @ A.T  # sum_s' A[s, s'] B(o_t+1 | s') beta_t+1(s')
        beta[:, t] = b / b.sum(-1, keepdim=True).clamp_min(1e-300)
    prior = torch.cat([p["initial"].expand(N, 1, 3), A[st[:, : T - 1]]], dim=1)  # (N, T, S): P(s_t | s_t-1)
    q = prior * emis * beta
    return q / q.sum(-1, keepdim=True)


def bayes_predictive(obs: Any, states: Any, proba: Mapping[str, Any]) -> torch.Tensor:
    """Bayes-optimal p(s_t | o_1:T, s_1:t-1) for t = 1..T -> (T, 3) float64, columns rainy, snowy, sunny.

    obs: T observations, states: the T (or first T-1) true states; names or token ids."""
    o = _to_idx(obs, OBSERVATIONS, _OBS_TOKEN, "an observation")
    s = _to_idx(states, STATES, _ST_TOKEN, "a state")
    if len(o) < 1 or len(s) not in (len(o), len(o) - 1):
        raise ValueError(f"got {len(o)} observations and {len(s)} states: pass T >= 1 observations and T or T-1 states")
    s = torch.cat([s, s.new_zeros(len(o) - len(s))])  # s_T is never conditioned on
    q = _predictive(o[None], s[None], validate_proba(proba))[0]
    if not torch.isfinite(q).all():
        t = int(torch.nonzero(~torch.isfinite(q).all(-1))[0])
        raise ValueError(f"this sequence has probability 0 under proba (at state position {t + 1})")
    return q[:, _VOCAB_ORDER]


@dataclass(frozen=True)
class BayesFloor:
    """Expected cross-entropy (nats per supervised token) and accuracy of the Bayes-optimal predictor."""

    loss: float
    accuracy: float
    loss_per_position: tuple[float, ...]
    accuracy_per_position: tuple[float, ...]
    method: str  # "exact" or "monte-carlo"
    loss_stderr: float = 0.0
    accuracy_stderr: float = 0.0


def _exact_floor(p: dict[str, torch.Tensor], T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-position expected entropy and max-probability of p(s_t | s_t-1, o_t:T).

    (s_t, o_t:T) given s_t-1 is independent of the past, so position t needs only the prior marginal of s_t-1
    and all 5^(T-t+1) future observation strings; p(o_suffix | s) is built up from the end (dynamic programming)."""
    pi, A, B = p["initial"], p["transition"], p["emission"]
    marg = [pi]  # marg[t] = p(s at 0-based position t)
    for _ in range(T - 1):
        marg.append(marg[-1] @ A)
    loss, acc = torch.zeros(T, dtype=torch.float64), torch.zeros(T, dtype=torch.float64)
    H = torch.ones(1, 3, dtype=torch.float64)  # H[o_suffix, s] = p(o_suffix | previous state s), suffix length L-1
    for L in range(1, T + 1):
        t = T - L  # 0-based position of the predicted state; it sees o_t..o_T-1 (L observations)
        emit_future = B.T[:, None, :] * H[None]  # (O, R, S): B(o_t | s_t) p(rest | s_t)
        trans, weight = (pi[None], torch.ones(1, dtype=torch.float64)) if t == 0 else (A, marg[t - 1])
        joint = (trans[:, None, None, :] * emit_future[None]).reshape(len(trans), -1, 3)  # (S_prev, O*R, S)
        evidence = joint.sum(-1, keepdim=True)  # p(o_t:T | s_t-1)
        q = joint / evidence.clamp_min(1e-300)
        loss[t] = weight @ -torch.special.xlogy(joint, q).sum((1, 2))  # E[-log q(s_t)] = E[H(q)]
        acc[t] = weight @ joint.amax(-1).sum(-1)  # P(argmax q == s_t) = E[max q]
        if t > 0:
            H = evidence[..., 0].T  # (O*R, S_prev): the next (longer) suffix table
    return loss, acc


def bayes_floor(
    proba: Mapping[str, Any], seq_len: int, method: str = "auto", num_samples: int = 100_000, seed: int = 0
) -> BayesFloor:
    """Loss/accuracy of the Bayes-optimal predictor on the T supervised state tokens.

    method "exact" (dynamic programming over all 5^T observation strings; T <= 9, chosen by "auto" for T <= 8,
    < 0.5 s) or "monte-carlo" (num_samples sequences, Rao-Blackwellised: averages the entropy and the max of the
    predictive, with standard errors; ~1 s). Mean loss = H(S_1:T | O_1:T) / T by the chain rule."""
    p, T = validate_proba(proba), _check_int("seq_len", seq_len, 1)
    if method not in ("auto", "exact", "monte-carlo"):
        raise ValueError(f"unknown method {method!r}: use 'auto', 'exact' or 'monte-carlo'")
    if method == "exact" or (method == "auto" and T <= 8):
        if T > 9:
            raise ValueError(f"exact floor enumerates 5^T observation strings; T={T} is too long, use 'monte-carlo'")
        loss, acc = _exact_floor(p, T)
        return BayesFloor(loss.mean().item(), acc.mean().item(), tuple(loss.tolist()), tuple(acc.tolist()), "exact")
    _check_int("num_samples", num_samples, 2)
    obs, st = _split_tokens(sample_sequences(p, T, np.arange(num_samples), seed))
    q = _predictive(obs, st, p)  # (N, T, 3)
    ent, mx = -torch.special.xlogy(q, q).sum(-1), q.amax(-1)  # (N, T)
    se = num_samples**-0.5
    return BayesFloor(
        ent.mean().item(), mx.mean().item(), tuple(ent.mean(0).tolist()), tuple(mx.mean(0).tolist()),
        "monte-carlo", ent.mean(1).std().item() * se, mx.mean(1).std().item() * se,
    )  # fmt: skip


def _viterbi(obs: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Most likely state paths for a batch: obs (N, T) -> (paths (N, T) proba indices, log-probs (N,))."""
    log_a, log_b = p["transition"].log(), p["emission"].log()  # log 0 = -inf: impossible moves never win
    delta = p["initial"].log() + log_b[:, obs[:, 0]].T  # (N, S)
    back = []
    for t in range(1, obs.shape[1]):
        delta, arg = (delta[:, :, None] + log_a).max(1)  # best previous state for each current state
        delta = delta + log_b[:, obs[:, t]].T
        back.append(arg)
    best, last = delta.max(-1)
    path = [last]
    for arg in reversed(back):
        path.append(arg.gather(1, path[-1][:, None])[:, 0])
    return torch.stack(path[::-1], 1), best


def viterbi(obs: Any, proba: Mapping[str, Any]) -> list[int]:
    """Most likely state sequence given the observations (names or token ids) -> state token ids."""
    o = _to_idx(obs, OBSERVATIONS, _OBS_TOKEN, "an observation")
    if len(o) < 1:
        raise ValueError("viterbi needs at least one observation")
    path, logp = _viterbi(o[None], validate_proba(proba))
    if not torch.isfinite(logp).all():
        raise ValueError("these observations have probability 0 under proba")
    return _ST_TOKEN[path[0].numpy()].tolist()


class WeatherDataset(Dataset):
    """Map-style dataset of HMM sequences; items are (x, y) long tensors of length 2*seq_len - 1.

    Generates `num_instances` samples (sample i depends only on (seed, i)) and keeps those whose content hashes
    into `split`, so train and test never share a sequence. Pass ``proba=train.proba`` to the test split when
    proba was random (the same seed gives the same tables anyway)."""

    def __init__(self, split: str, seq_len: int = 6, num_instances: int = 10000,
                 proba: Mapping[str, Any] | None = None, seed: int = 0, test_fraction: float = 0.2) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
        _check_int("num_instances", num_instances, 1)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        self.split, self.seq_len, self.seed = split, _check_int("seq_len", seq_len, 1), _check_int("seed", seed, 0)
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
        seq = self.data[i]
        x, y = seq[:-1].clone(), seq[1:].clone()  # (2T-1,) each
        y[: self.seq_len - 1] = IGNORE_INDEX  # observations are given, not predicted
        return x, y

    def get_vocab_size(self) -> int:
        return len(VOCAB)

    def get_block_size(self) -> int:
        return 2 * self.seq_len - 1

    decode_obs = staticmethod(decode_obs)
    decode_st = staticmethod(decode_st)


def _tokens_and_proba(dataset: Dataset, proba: Mapping[str, Any] | None) -> tuple[torch.Tensor, dict]:
    """(N, 2T) token ids of any dataset of (x, y) items, and the HMM tables (dataset.proba unless given)."""
    proba = proba if proba is not None else getattr(dataset, "proba", None)
    if proba is None:
        raise ValueError("this dataset has no .proba: pass proba= explicitly")
    if isinstance(dataset, WeatherDataset):
        return dataset.data, validate_proba(proba)
    tokens = torch.stack([torch.cat([x, y[-1:]]) for x, y in (dataset[i] for i in range(len(dataset)))])
    return tokens, validate_proba(proba)


def _accuracy(dataset: Dataset, proba: Mapping[str, Any] | None, decoder: Any) -> torch.Tensor:
    tokens, p = _tokens_and_proba(dataset, proba)
    obs, st = _split_tokens(tokens)
    return (decoder(obs, st, p) == tokens[:, obs.shape[1] :]).double().mean(0)  # decoder returns state token ids


def viterbi_accuracy(dataset: Dataset, proba: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Per-position accuracy (T,) of Viterbi paths (from the observations alone) against the true states."""
    return _accuracy(dataset, proba, lambda obs, st, p: torch.from_numpy(_ST_TOKEN)[_viterbi(obs, p)[0]])


def bayes_accuracy(dataset: Dataset, proba: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Per-position accuracy (T,) of the Bayes-optimal predictor with teacher forcing; ties go to the lowest
    token id, as in evaluate_model_accuracy."""
    return _accuracy(dataset, proba, lambda o, s, p: _predictive(o, s, p)[..., _VOCAB_ORDER].argmax(-1) + STATE_IDS[0])


@torch.no_grad()
def evaluate_model_accuracy(
    model: torch.nn.Module, dataset: Dataset, device: str | torch.device | None = None, batch_size: int = 512
) -> torch.Tensor:
    """Per-position accuracy (T,) of a model whose forward(idx) returns (logits, loss), with teacher forcing:
    at each state target the prediction is the argmax over the three state ids."""
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, n = None, 0
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            out = model(x.to(device))
            logits = out[0] if isinstance(out, tuple | list) else getattr(out, "logits", out)  # (B, 2T-1, V)
            T = (y.shape[1] + 1) // 2
            pred = logits[:, T - 1 :, list(STATE_IDS)].argmax(-1).cpu() + STATE_IDS[0]  # (B, T)
            hits = (pred == y[:, T - 1 :]).double().sum(0)
            correct, n = hits if correct is None else correct + hits, n + len(x)
    finally:
        model.train(was_training)
    return correct / n
