"""Exact inference on the weather HMM of labsupport.weather: the Bayes-optimal predictor, its loss floor, Viterbi,
and per-position accuracy/loss of a model next to them.

Bayes-optimal prediction: with teacher forcing the model predicts s_t from o_1:T and s_1:t-1. By the
Markov property p(s_t | o_1:T, s_1:t-1) = p(s_t | s_t-1, o_t:T) ∝ P(s_t | s_t-1) B(o_t | s_t) beta_t(s_t),
where beta_t(s) = p(o_t+1:T | s_t = s) comes from a backward pass. Its cross-entropy is a floor no model
can beat on average.

Conventions as in labsupport.weather: `bayes_predictive` works in the tables' order (indices into OBSERVATIONS and
STATES, columns sunny, rainy, snowy), like exercise 03.2; `viterbi` and the accuracy helpers return states as token
ids (5-7), which line up with ``logits[..., 5:8]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from labsupport.core import eval_mode
from labsupport.precision import amp
from labsupport.weather import (
    STATE_IDS,
    STATE_TOKENS,
    VOCAB_ORDER,
    WeatherDataset,
    check_int,
    sample_sequences,
    split_tokens,
    table_indices,
    validate_proba,
)


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
    """Bayes-optimal p(s_t | o_1:T, s_1:t-1) for t = 1..T, in the tables' order (exercise 03.2's contract).

    obs: (T,) or a batch (N, T) of indices into OBSERVATIONS; states: indices into STATES, the T (or first T-1)
    true states. Returns (T, 3) or (N, T, 3) float64 with columns in STATES order (``q[..., VOCAB_ORDER]`` lines
    them up with ``logits[..., 5:8]``). Names or token ids: convert them with `weather.table_indices`.
    """
    o, s = torch.as_tensor(obs, dtype=torch.long), torch.as_tensor(states, dtype=torch.long)
    single = o.dim() == 1
    o, s = (o[None], s[None]) if single else (o, s)
    if o.dim() != 2 or o.shape[1] < 1 or s.dim() != 2 or s.shape[0] != o.shape[0] or s.shape[1] not in (
            o.shape[1], o.shape[1] - 1):
        raise ValueError(f"got {o.shape[-1]} observations and {s.shape[-1]} states (shapes {tuple(o.shape)}, "
                         f"{tuple(s.shape)}): pass T >= 1 observations and T or T-1 states, or (N, T) batches")
    for name, t, n, table in (("obs", o, 5, "OBSERVATIONS"), ("states", s, 3, "STATES")):
        if t.numel() and not 0 <= int(t.min()) <= int(t.max()) < n:
            raise ValueError(f"{name} must hold indices into {table} (0..{n - 1}), got {t.tolist()}; "
                             "convert names or token ids with weather.table_indices")
    s = torch.cat([s, s.new_zeros(s.shape[0], o.shape[1] - s.shape[1])], dim=1)  # s_T is never conditioned on
    q = _predictive(o, s, validate_proba(proba))
    if not torch.isfinite(q).all():
        t = int(torch.nonzero(~torch.isfinite(q).all(-1))[0, 1])
        raise ValueError(f"this sequence has probability 0 under proba (at state position {t + 1})")
    return q[0] if single else q


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
    p, T = validate_proba(proba), check_int("seq_len", seq_len, 1)
    if method not in ("auto", "exact", "monte-carlo"):
        raise ValueError(f"unknown method {method!r}: use 'auto', 'exact' or 'monte-carlo'")
    if method == "exact" or (method == "auto" and T <= 8):
        if T > 9:
            raise ValueError(f"exact floor enumerates 5^T observation strings; T={T} is too long, use 'monte-carlo'")
        loss, acc = _exact_floor(p, T)
        return BayesFloor(loss.mean().item(), acc.mean().item(), tuple(loss.tolist()), tuple(acc.tolist()), "exact")
    check_int("num_samples", num_samples, 2)
    obs, st = split_tokens(sample_sequences(p, T, np.arange(num_samples), seed))
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
    o = table_indices(obs, "observation")
    if len(o) < 1:
        raise ValueError("viterbi needs at least one observation")
    path, logp = _viterbi(o[None], validate_proba(proba))
    if not torch.isfinite(logp).all():
        raise ValueError("these observations have probability 0 under proba")
    return STATE_TOKENS[path[0].numpy()].tolist()


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
    obs, st = split_tokens(tokens)
    return (decoder(obs, st, p) == tokens[:, obs.shape[1] :]).double().mean(0)  # decoder returns state token ids


def viterbi_accuracy(dataset: Dataset, proba: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Per-position accuracy (T,) of Viterbi paths (from the observations alone) against the true states."""
    return _accuracy(dataset, proba, lambda obs, st, p: torch.from_numpy(STATE_TOKENS)[_viterbi(obs, p)[0]])


def bayes_accuracy(dataset: Dataset, proba: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Per-position accuracy (T,) of the Bayes-optimal predictor with teacher forcing; ties go to the lowest
    token id, as in evaluate_model_accuracy."""
    return _accuracy(dataset, proba, lambda o, s, p: _predictive(o, s, p)[..., VOCAB_ORDER].argmax(-1) + STATE_IDS[0])


def bayes_loss(dataset: Dataset, proba: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Per-position mean cross-entropy (T,) in nats of the Bayes-optimal predictor on this dataset: the floor
    measured on the very sequences a model is evaluated on (bayes_floor is its expectation over the HMM)."""
    tokens, p = _tokens_and_proba(dataset, proba)
    obs, st = split_tokens(tokens)
    q = _predictive(obs, st, p).gather(-1, st[..., None])[..., 0]  # (N, T): probability of the true state
    return -q.log().mean(0)


def per_position_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction (T,) of a batch whose predicted state is right at each of the T supervised positions.

    logits (B, 2T-1, V), targets (B, 2T-1) as WeatherDataset makes them (the last T targets are the states). The
    prediction is the argmax over the three state ids (logits[..., 5:8]); ties go to the lowest token id."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"need logits (B, L, V) and targets (B, L); got {tuple(logits.shape)}, {tuple(targets.shape)}")
    T = (targets.shape[1] + 1) // 2
    pred = logits[:, T - 1 :, list(STATE_IDS)].argmax(-1).to(targets.device) + STATE_IDS[0]  # (B, T) token ids
    return (pred == targets[:, T - 1 :]).double().mean(0)


@torch.no_grad()
def _evaluate(model: torch.nn.Module, dataset: Dataset, device: Any, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Per-position (mean NLL (T,), accuracy (T,)) of `model` over all of `dataset`, dropout off, under the one
    precision policy. Not evaluation.evaluate: that one averages every target into one number, this keeps a value
    per state position (to compare with bayes_loss / bayes_floor position by position)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    policy = amp(device, training=False, model=model)
    nll, hits, n = 0.0, 0.0, 0
    with eval_mode(model), policy.autocast():
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            out = model(x.to(device))
            logits = out[0] if isinstance(out, tuple | list) else getattr(out, "logits", out)  # (B, 2T-1, V)
            logits = logits.float().cpu()
            T = (y.shape[1] + 1) // 2
            ce = F.cross_entropy(logits[:, T - 1 :].transpose(1, 2), y[:, T - 1 :], reduction="none")  # (B, T)
            nll = nll + ce.double().sum(0)
            hits = hits + per_position_accuracy(logits, y) * len(x)
            n += len(x)
    if n == 0:
        raise ValueError("the dataset is empty")
    return nll / n, hits / n


def evaluate_model_accuracy(
    model: torch.nn.Module, dataset: Dataset, device: str | torch.device | None = None, batch_size: int = 512
) -> torch.Tensor:
    """Per-position accuracy (T,) of a model whose forward(idx) returns (logits, loss), with teacher forcing:
    at each state target the prediction is the argmax over the three state ids."""
    return _evaluate(model, dataset, device, batch_size)[1]


def evaluate_model_loss(
    model: torch.nn.Module, dataset: Dataset, device: str | torch.device | None = None, batch_size: int = 512
) -> torch.Tensor:
    """Per-position mean cross-entropy (T,) in nats over the whole dataset (the training loss is its mean):
    compare it with bayes_loss(dataset) or bayes_floor(...).loss_per_position."""
    return _evaluate(model, dataset, device, batch_size)[0]
