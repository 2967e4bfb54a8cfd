"""Self-checks for Lab 04 (text generation). The student's `apply_temperature` and `top_k_filter` are compared
with `labsupport.generate`'s on fixed random logits and edge cases, then used inside a sampling step whose
draws must equal `labsupport.generate.sample_next`'s for the same seed."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from labsupport.check import exercise
from labsupport.generate import apply_temperature, sample_next, top_k_filter

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


def _call(fn: Callable, logits: torch.Tensor, arg: float | int, name: str) -> torch.Tensor:
    """Call the student's function on a copy and make sure it neither changed its input nor returned junk."""
    before = logits.clone()
    out = fn(logits, arg)
    if not torch.equal(logits, before):
        raise AssertionError(f"{name} changed its input tensor in place; return a new tensor instead "
                             f"(e.g. logits / t or logits.masked_fill(...), not logits /= t or logits[...] = ...)")
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{name} must return a tensor, got {type(out).__name__}")
    if out.shape != logits.shape:
        raise AssertionError(f"{name}: expected shape {tuple(logits.shape)} (same as the logits), "
                             f"got {tuple(out.shape)}")
    return out


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


def _same_draws(what: str, temperature: float, top_k: int | None, **fns: Callable) -> None:
    logits = random_logits(rows=256, vocab=50, seed=7)
    got = _sampling_step(logits.clone(), temperature, top_k, torch.Generator().manual_seed(0), **fns)
    want = sample_next(logits, temperature, top_k, generator=torch.Generator().manual_seed(0))
    if not torch.equal(got, want):
        n = int((got != want).sum())
        raise AssertionError(f"{what}: a sampling step built on your function drew different tokens than "
                             f"labsupport.generate.sample_next with the same seed in {n} of {len(want)} rows")


# ---------------------------------------------------------------------------------------------- checks


@exercise("04.1", title="temperature scaling",
          hint="return logits / temperature (a new tensor; do not modify logits in place)")
def check_temperature(student_apply_temperature: Callable) -> str:
    cases = [(random_logits(seed=1), t) for t in (1.0, 0.3, 1.5, 2, 0.01, 100.0)]
    cases += [(random_logits(rows=1, vocab=7, seed=2)[0], 0.5), (tie_logits(), 0.7)]  # one row (V,); -inf kept
    for logits, t in cases:
        got = _call(student_apply_temperature, logits.clone(), t, "apply_temperature")
        _same(got.reshape(-1, logits.size(-1)), apply_temperature(logits, t).reshape(-1, logits.size(-1)),
              f"apply_temperature(logits of shape {tuple(logits.shape)}, temperature={t})")
    for t in (0.3, 1.0, 1.5):
        _same_draws(f"temperature={t}", t, None, temp_fn=student_apply_temperature)
    return f"{len(cases)} logit tensors scaled correctly; sampled tokens match sample_next at T = 0.3, 1.0, 1.5"


@exercise("04.2", title="top-k filtering",
          hint="kth = torch.topk(logits, min(k, V), dim=-1).values[..., -1:]; "
               "return logits.masked_fill(logits < kth, float('-inf')) (each row has its own threshold)")
def check_top_k(student_top_k_filter: Callable) -> str:
    logits = random_logits(seed=3)  # (8, 20)
    V = logits.size(-1)
    cases = [(logits, k) for k in (1, 3, 10, V - 1, V, V + 5)]  # k >= V keeps everything
    cases += [(tie_logits(), k) for k in (1, 2, 3, 5)]  # ties with the k-th largest are kept
    cases += [(random_logits(rows=1, vocab=5, seed=4), 2)]
    for lg, k in cases:
        got = _call(student_top_k_filter, lg.clone(), k, "top_k_filter")
        _same(got, top_k_filter(lg, k), f"top_k_filter(logits of shape {tuple(lg.shape)}, k={k})")
    for t, k in ((1.0, 5), (0.7, 1), (1.5, 40)):
        _same_draws(f"temperature={t}, top_k={k}", t, k, topk_fn=student_top_k_filter)
    return f"{len(cases)} cases filtered correctly (ties, k >= V, -inf entries); sampled tokens match sample_next"
