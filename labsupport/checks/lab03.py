"""Self-checks for Lab 03 (a GPT on weather-HMM data). Each compares the student's function with the labsupport
reference on fixed inputs drawn from the HMM: 03.1 `weather.make_xy`, 03.2 the backward-pass predictive of
`hmm.bayes_predictive` (in proba order), 03.3 `hmm.per_position_accuracy`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from labsupport import hmm, weather
from labsupport.check import exercise

PROBAS = {"FIXED_PROBA": weather.FIXED_PROBA, "random_proba(7)": weather.random_proba(7)}


def _sequences(proba: dict, seq_len: int, n: int, seed: int) -> torch.Tensor:
    """(n, 2T) token ids drawn from the HMM: observations then states."""
    return weather.sample_sequences(proba, seq_len, range(n), seed=seed)


def _tensor(got: object, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} should return a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {shape}")
    return got


# ---------------------------------------------------------------------------------------------- 03.1


@exercise("03.1", title="build (x, y) with masked observation targets",
          hint="tokens = cat(obs, states); x = tokens[:-1]; y = tokens[1:].clone(); y[:T-1] = -100 "
               "(clone: y is a view of the same memory as x)")
def check_make_xy(make_xy: Callable) -> str:
    cases = [_sequences(weather.FIXED_PROBA, T, 3, seed=T) for T in (1, 2, 6, 9)]
    for seqs in cases:
        T = seqs.shape[1] // 2
        for seq in seqs:
            obs, states = seq[:T].clone(), seq[T:].clone()
            want_x, want_y = weather.make_xy(seq[:T], seq[T:])
            what = f"make_xy(obs={obs.tolist()}, states={states.tolist()})"
            got = make_xy(obs, states)
            if not (torch.equal(obs, seq[:T]) and torch.equal(states, seq[T:])):
                raise AssertionError(f"make_xy(obs={seq[:T].tolist()}, states={seq[T:].tolist()}) changed its "
                                     "inputs: build new tensors instead")
            if not isinstance(got, tuple | list) or len(got) != 2:
                raise AssertionError(f"{what} should return a pair (x, y), got {type(got).__name__}")
            for name, g, want in (("x", got[0], want_x), ("y", got[1], want_y)):
                g = _tensor(g, f"{what}: {name}", (2 * T - 1,))
                if g.dtype != torch.long:
                    raise AssertionError(f"{what}: {name} has dtype {g.dtype}; ids and targets must be torch.long")
                if not torch.equal(g, want):
                    raise AssertionError(f"{what}: {name} = {g.tolist()}, expected {want.tolist()}")
    return "x is the sequence without its last token, y is shifted by one with T-1 masked targets (T = 1, 2, 6, 9)"


# ---------------------------------------------------------------------------------------------- 03.2


@exercise("03.2", title="Bayes-optimal predictive with a backward pass",
          hint="beta[T-1] = 1; beta[t] = A @ (B[:, obs[t+1]] * beta[t+1]); prior = pi at t=0, else A[states[t-1]]; "
               "q[t] = prior * B[:, obs[t]] * beta[t], normalised to sum to 1")
def check_bayes_predictive(bayes_predictive: Callable) -> str:
    n = 0
    for name, proba in PROBAS.items():
        p = weather.validate_proba(proba)
        for T, seed in ((1, 0), (2, 1), (6, 2), (8, 3)):
            seqs = _sequences(proba, T, 4, seed)
            obs, st = weather._split_tokens(seqs)  # (4, T) proba indices each
            want = hmm._predictive(obs, st, p)  # (4, T, 3), proba order
            for i in range(len(seqs)):
                what = f"bayes_predictive(obs={obs[i].tolist()}, states={st[i].tolist()}, {name})"
                tables = {k: v.clone() for k, v in p.items()}
                got = _tensor(bayes_predictive(obs[i].clone(), st[i].clone(), tables), what, (T, 3))
                got = got.detach().double()
                if not torch.allclose(got.sum(-1), torch.ones(T, dtype=torch.float64), atol=1e-5):
                    raise AssertionError(f"{what}: rows sum to {got.sum(-1).tolist()}; each row must be a distribution")
                if not torch.allclose(got, want[i], atol=1e-5):
                    t = int((got - want[i]).abs().amax(-1).argmax())
                    raise AssertionError(f"{what}: row t={t} is {[round(v, 4) for v in got[t].tolist()]}, expected "
                                         f"{[round(v, 4) for v in want[i, t].tolist()]}")
                n += 1
    return f"{n} sequences (T = 1, 2, 6, 8; fixed and random tables) match labsupport.hmm to 1e-5"


# ---------------------------------------------------------------------------------------------- 03.3


def _logit_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(logits (B, 2T-1, 8), y (B, 2T-1)) batches in the WeatherDataset layout; in the later cases an observation
    token has the largest logit (it must not count as a prediction) and masked positions carry big state logits."""
    gen = torch.Generator().manual_seed(3)
    cases = []
    for T, B, obs_wins in ((6, 32, False), (1, 5, False), (3, 16, True), (6, 64, True)):
        seqs = _sequences(weather.FIXED_PROBA, T, B, seed=10 + T)
        y = torch.stack([weather.make_xy(s[:T], s[T:])[1] for s in seqs])  # (B, 2T-1)
        logits = torch.randn(B, 2 * T - 1, 8, generator=gen)
        push = 3.0 * (torch.rand(B, T, 1, generator=gen) < 0.6)  # most rows lean to the truth: accuracies vary
        logits[:, T - 1 :].scatter_add_(-1, y[:, T - 1 :, None], push)
        if obs_wins:
            logits[:, :, 0] = 10.0
            logits[:, : T - 1, 6] = 20.0
        cases.append((logits, y))
    return cases


@exercise("03.3", title="per-position accuracy at the supervised positions",
          hint="T = (L + 1) // 2; pred = logits[:, T-1:, 5:8].argmax(-1) + 5; "
               "return (pred == y[:, T-1:]).float().mean(0), shape (T,)")
def check_per_position_accuracy(per_position_accuracy: Callable) -> str:
    for logits, y in _logit_cases():
        B, L, _ = logits.shape
        T = (L + 1) // 2
        what = f"per_position_accuracy(logits {tuple(logits.shape)}, y {tuple(y.shape)})"
        got = per_position_accuracy(logits.clone(), y.clone())
        got = torch.as_tensor(_tensor(got, what, (T,)), dtype=torch.float64)
        want = hmm.per_position_accuracy(logits, y)
        if not torch.allclose(got, want, atol=1e-6):
            raise AssertionError(f"{what} = {[round(v, 4) for v in got.tolist()]}, expected "
                                 f"{[round(v, 4) for v in want.tolist()]}")
    return "per-position accuracies match labsupport.hmm on 4 batches (T = 6, 1, 3, 6)"
