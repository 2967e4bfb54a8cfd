"""Self-checks for Lab 04 (text generation). The student's `apply_temperature` and `top_k_filter` are compared
with `labsupport.generate`'s on fixed random logits and edge cases, then used inside a sampling step whose
draws must equal `labsupport.generate.sample_next`'s for the same seed."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from labsupport.check import Records, Trace, WrongAnswer, exercise
from labsupport.generate import apply_temperature, top_k_filter

NEG_INF = float("-inf")


def random_logits(rows: int = 8, vocab: int = 20, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(rows, vocab, generator=g)  # (rows, vocab)


def tie_logits() -> torch.Tensor:
    """Rows with ties at the k-th largest value (k = 2, 3) and a row that already holds -inf."""
    return torch.tensor([
        [3.0, 1.0, 2.0, 2.0, 0.0, -1.0],  # top-2: 3, then 2 twice -> both 2s stay
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # all equal -> everything stays for any k
        [0.5, NEG_INF, 2.0, NEG_INF, 1.0, 0.5],  # already masked tokens stay masked
    ])


def _same(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    inf_want, inf_got = torch.isneginf(want), torch.isneginf(got)
    if not torch.equal(inf_got, inf_want):
        row, col = (inf_got != inf_want).nonzero()[0].tolist()
        raise AssertionError(f"{what}: entry [{row}, {col}] should {'' if inf_want[row, col] else 'not '}be -inf "
                             f"(got {got[row, col].item():.4g})")
    if not torch.allclose(got[~inf_want].float(), want[~inf_want].float(), rtol=1e-5, atol=1e-6):
        diff = (got.float() - want.float()).abs().masked_fill(inf_want, 0)
        row, col = divmod(int(diff.argmax()), want.size(-1))
        raise AssertionError(f"{what}: entry [{row}, {col}] expected {want[row, col].item():.4g}, "
                             f"got {got[row, col].item():.4g}")


def _sampling_step(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator,
                   temp_fn: Callable = apply_temperature, topk_fn: Callable = top_k_filter) -> torch.Tensor:
    """The notebook's sampling step with pluggable temperature / top-k functions: (B, V) -> (B,)."""
    logits = temp_fn(logits, temperature)
    if top_k is not None:
        logits = topk_fn(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def _judge(what_cases: str) -> Callable[..., str]:
    """Judge: each output matches the reference's (-inf where it has -inf, values to 1e-5), the input is
    unchanged, and a sampling step built on the function draws the same tokens as sample_next."""

    def judge(got: Records, want: Records) -> str:
        for label, w in want.items_:
            g = got.get(label)
            what, _, part = label.rpartition(" | ")
            if g is None:
                raise WrongAnswer(f"{what}: no result recorded")
            if part == "input afterwards":
                if type(g) is not torch.Tensor or not torch.equal(g, w):
                    raise WrongAnswer(f"{what} changed its input tensor in place; return a new tensor instead (e.g. "
                                      "logits / t or logits.masked_fill(...), not logits /= t or logits[...] = ...)")
            elif part == "draws":
                if type(g) is not torch.Tensor or g.shape != w.shape or not torch.equal(g, w):
                    n = int((g != w).sum()) if type(g) is torch.Tensor and g.shape == w.shape else len(w)
                    raise WrongAnswer(f"{what}: a sampling step built on your function drew different tokens than "
                                      f"labsupport.generate.sample_next with the same seed in {n} of {len(w)} rows")
            else:
                if type(g) is not torch.Tensor:
                    raise WrongAnswer(f"{what} must return a tensor")
                if g.shape != w.shape:
                    raise WrongAnswer(f"{what}: expected shape {tuple(w.shape)} (same as the logits), "
                                      f"got {tuple(g.shape)}")
                _same(g.reshape(-1, w.size(-1)), w.reshape(-1, w.size(-1)), what)
        return what_cases

    return judge


def _record_call(t: Trace, fn: Callable, logits: torch.Tensor, arg: float | int, what: str) -> None:
    inp = logits.clone()
    out = fn(inp, arg)
    t.record(f"{what} | output", out.detach() if type(out) is torch.Tensor else out)
    t.record(f"{what} | input afterwards", inp)


def _record_draws(t: Trace, what: str, temperature: float, top_k: int | None, **fns: Callable) -> None:
    logits = random_logits(rows=256, vocab=50, seed=7)
    t.record(f"{what} | draws", _sampling_step(logits.clone(), temperature, top_k, torch.Generator().manual_seed(0),
                                               **fns))


# ---------------------------------------------------------------------------------------------- checks

TEMP_CASES = [(random_logits(seed=1), t) for t in (1.0, 0.3, 1.5, 2, 0.01, 100.0)]
TEMP_CASES += [(random_logits(rows=1, vocab=7, seed=2)[0], 0.5), (tie_logits(), 0.7)]  # one row (V,); -inf kept
_L = random_logits(seed=3)  # (8, 20)
TOPK_CASES = [(_L, k) for k in (1, 3, 10, _L.size(-1) - 1, _L.size(-1), _L.size(-1) + 5)]  # k >= V keeps all
TOPK_CASES += [(tie_logits(), k) for k in (1, 2, 3, 5)]  # ties with the k-th largest are kept
TOPK_CASES += [(random_logits(rows=1, vocab=5, seed=4), 2)]


@exercise("04.1", title="temperature scaling",
          hint="return logits / temperature (a new tensor; do not modify logits in place)",
          reference=["labsupport.generate:apply_temperature"],
          judge=_judge(f"{len(TEMP_CASES)} logit tensors scaled correctly; sampled tokens match sample_next at "
                       "T = 0.3, 1.0, 1.5"))
def drive_temperature(t: Trace, apply_temperature: Callable) -> None:
    for logits, temp in TEMP_CASES:
        _record_call(t, apply_temperature, logits, temp,
                     f"apply_temperature(logits of shape {tuple(logits.shape)}, temperature={temp})")
    for temp in (0.3, 1.0, 1.5):
        _record_draws(t, f"temperature={temp}", temp, None, temp_fn=apply_temperature)


@exercise("04.2", title="top-k filtering",
          hint="kth = torch.topk(logits, min(k, V), dim=-1).values[..., -1:]; "
               "return logits.masked_fill(logits < kth, float('-inf')) (each row has its own threshold)",
          reference=["labsupport.generate:top_k_filter"],
          judge=_judge(f"{len(TOPK_CASES)} cases filtered correctly (ties, k >= V, -inf entries); sampled tokens "
                       "match sample_next"))
def drive_top_k(t: Trace, top_k_filter: Callable) -> None:
    for lg, k in TOPK_CASES:
        _record_call(t, top_k_filter, lg, k, f"top_k_filter(logits of shape {tuple(lg.shape)}, k={k})")
    for temp, k in ((1.0, 5), (0.7, 1), (1.5, 40)):
        _record_draws(t, f"temperature={temp}, top_k={k}", temp, k, topk_fn=top_k_filter)
