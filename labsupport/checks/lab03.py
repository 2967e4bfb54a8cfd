"""Self-checks for Lab 03 (a GPT on weather-HMM data). Each compares the student's function with the labsupport
reference on fixed inputs drawn from the HMM: 03.1 `weather.make_xy`, 03.2 the backward-pass predictive of
`hmm.bayes_predictive` (in proba order), 03.3 `hmm.per_position_accuracy`. Drivers record what the
student's function returns; the judges compare it with the same calls on the references (labsupport/check.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from labsupport import hmm, weather
from labsupport.check import Records, Trace, WrongAnswer, compare, exercise

PROBAS = {"FIXED_PROBA": weather.FIXED_PROBA, "random_proba(7)": weather.random_proba(7)}


def _sequences(proba: dict, seq_len: int, n: int, seed: int) -> torch.Tensor:
    """(n, 2T) token ids drawn from the HMM: observations then states."""
    return weather.sample_sequences(proba, seq_len, range(n), seed=seed)


def _pair(got: object) -> object:
    """A returned (x, y) as a tuple, whatever sequence type holds it (the tensors are checked exactly)."""
    return tuple(got) if type(got) in (list, tuple) else got


# ---------------------------------------------------------------------------------------------- 03.1

XY_CASES = [_sequences(weather.FIXED_PROBA, T, 3, seed=T) for T in (1, 2, 6, 9)]


def _judge_make_xy(got: Records, want: Records) -> str:
    for label, w in want.items_:
        g = got.get(label)
        what, _, name = label.rpartition(": ")
        if name == "inputs afterwards":
            if g is None or not all(torch.equal(a, b) for a, b in zip(g, w, strict=True)):
                raise WrongAnswer(f"{what} changed its inputs: build new tensors instead")
            continue
        if type(g) is not torch.Tensor:
            raise WrongAnswer(f"{what}: {name} should be a torch.Tensor" if g is not None else f"{label}: no result")
        if tuple(g.shape) != tuple(w.shape):
            raise WrongAnswer(f"{what}: {name} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
        if g.dtype != torch.long:
            raise WrongAnswer(f"{what}: {name} has dtype {g.dtype}; ids and targets must be torch.long")
        if not torch.equal(g, w):
            raise WrongAnswer(f"{what}: {name} = {g.tolist()}, expected {w.tolist()}")
    return "x is the sequence without its last token, y is shifted by one with T-1 masked targets (T = 1, 2, 6, 9)"


@exercise("03.1", title="build (x, y) with masked observation targets",
          hint="the model reads observations then states as one sequence and predicts each next token; only the "
               "state tokens are targets, so the positions before them get the ignore value",
          hint2="torch.cat, slicing off the last / first token, .clone() before writing into the targets, "
                "IGNORE_INDEX",
          reference=["labsupport.weather:make_xy"], judge=_judge_make_xy)
def drive_make_xy(t: Trace, make_xy: Callable) -> None:
    for seqs in XY_CASES:
        T = seqs.shape[1] // 2
        for seq in seqs:
            obs, states = seq[:T].clone(), seq[T:].clone()
            what = f"make_xy(obs={obs.tolist()}, states={states.tolist()})"
            got = make_xy(obs, states)
            if type(got) not in (tuple, list) or len(got) != 2:
                raise AssertionError(f"{what} should return a pair (x, y), got {type(got).__name__}")
            t.record(f"{what}: x", got[0])
            t.record(f"{what}: y", got[1])
            t.record(f"{what}: inputs afterwards", (obs, states))


# ---------------------------------------------------------------------------------------------- 03.2


def ref_bayes_predictive(obs: torch.Tensor, states: torch.Tensor, proba: dict) -> torch.Tensor:
    """(T, 3) in proba order, one sequence (the exercise's contract): labsupport.hmm's public version."""
    return hmm.bayes_predictive(obs, states, proba)


PREDICTIVE_CASES = []
for _name, _proba in PROBAS.items():
    _p = weather.validate_proba(_proba)
    for _T, _seed in ((1, 0), (2, 1), (6, 2), (8, 3)):
        _obs, _st = weather.split_tokens(_sequences(_proba, _T, 4, _seed))
        PREDICTIVE_CASES += [(_name, _p, _obs[i], _st[i]) for i in range(len(_obs))]


def _judge_predictive(got: Records, want: Records) -> str:
    for label, w in want.items_:
        g = got.get(label)
        if type(g) is not torch.Tensor:
            raise WrongAnswer(f"{label} should return a torch.Tensor" if g is not None else f"{label}: no result")
        if tuple(g.shape) != tuple(w.shape):
            raise WrongAnswer(f"{label} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
        g, T = g.double(), w.shape[0]
        if not torch.allclose(g.sum(-1), torch.ones(T, dtype=torch.float64), atol=1e-5):
            raise WrongAnswer(f"{label}: rows sum to {g.sum(-1).tolist()}; each row must be a distribution")
        if not torch.allclose(g, w.double(), atol=1e-5):
            t = int((g - w).abs().amax(-1).argmax())
            raise WrongAnswer(f"{label}: row t={t} is {[round(v, 4) for v in g[t].tolist()]}, expected "
                              f"{[round(v, 4) for v in w[t].tolist()]}")
    return f"{len(want)} sequences (T = 1, 2, 6, 8; fixed and random tables) match labsupport.hmm to 1e-5"


@exercise("03.2", title="Bayes-optimal predictive with a backward pass",
          hint="a backward pass collects how likely the future observations are from each state; combine it with "
               "the prior for the current state (the start distribution, or the row of the previous true state) "
               "and the emission of the current observation, then normalise",
          hint2="a loop from the end: matrix-vector products with A and elementwise products with a column of B; "
                "divide by the sum",
          reference=["labsupport.checks.lab03:ref_bayes_predictive"], judge=_judge_predictive)
def drive_bayes_predictive(t: Trace, bayes_predictive: Callable) -> None:
    for name, p, obs, st in PREDICTIVE_CASES:
        got = bayes_predictive(obs.clone(), st.clone(), {k: v.clone() for k, v in p.items()})
        if type(got) is torch.Tensor:
            got = got.detach()
        t.record(f"bayes_predictive(obs={obs.tolist()}, states={st.tolist()}, {name})", got)


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


LOGIT_CASES = _logit_cases()


def _judge_accuracy(got: Records, want: Records, **options: float) -> str:
    compare(Records([(k, v.double() if type(v) is torch.Tensor else v) for k, v in got.items_]),
            Records([(k, v.double()) for k, v in want.items_]), rtol=0.0, atol=1e-6)
    return "per-position accuracies match labsupport.hmm on 4 batches (T = 6, 1, 3, 6)"


@exercise("03.3", title="per-position accuracy at the supervised positions",
          hint="the supervised positions are the last T of the sequence; the prediction is the most likely of "
               "the state tokens, and the accuracy is averaged over the batch for each position",
          hint2="slice the logits to the state tokens' ids, argmax(-1) plus the id offset, compare with the "
                "targets, .float().mean(0)",
          reference=["labsupport.hmm:per_position_accuracy"], judge=_judge_accuracy)
def drive_per_position_accuracy(t: Trace, per_position_accuracy: Callable) -> None:
    for logits, y in LOGIT_CASES:
        got = per_position_accuracy(logits.clone(), y.clone())
        t.record(f"per_position_accuracy(logits {tuple(logits.shape)}, y {tuple(y.shape)})",
                 got.detach() if type(got) is torch.Tensor else got)
