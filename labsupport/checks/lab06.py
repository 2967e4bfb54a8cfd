"""Self-checks for Lab 06 (LSTM language model on IMDB). Each compares the student's function with the
reference in `labsupport.lstm` (or a one-line definition here) on small fixed inputs, edge cases included."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from labsupport.check import Records, Trace, WrongAnswer, exercise


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(got: object, want: float, what: str, tol: float = 1e-5) -> None:
    got = float(got.detach()) if isinstance(got, torch.Tensor) else got
    if not isinstance(got, float | int) or not math.isclose(got, want, rel_tol=tol, abs_tol=tol):
        raise AssertionError(f"{what}: expected {want:.6f}, got {got!r}")


def _got(got: Records, label: str) -> object:
    if label not in got:
        raise WrongAnswer(f"{label}: no result recorded")
    return got[label]


# ---------------------------------------------------------------------------------------------- 06.1


def ref_make_inputs_targets(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return batch[:, :-1], batch[:, 1:]


SHIFT_CASES = [torch.tensor([[2, 10, 11, 12, 3]]), torch.tensor([[2, 5, 3, 1, 1], [2, 7, 8, 9, 3]]),
               torch.randint(0, 50, (4, 9), generator=_gen(0)), torch.tensor([[2, 3]])]


def _judge_shift(got: Records, want: Records) -> str:
    for batch in SHIFT_CASES:
        what = f"make_inputs_targets({batch.tolist()})"
        for name in ("x", "y"):
            g, w = _got(got, f"{what}: {name}"), want[f"{what}: {name}"]
            if type(g) is not torch.Tensor or g.shape != w.shape:
                shape = tuple(g.shape) if type(g) is torch.Tensor else type(g).__name__
                raise WrongAnswer(f"for a batch of shape {tuple(batch.shape)}, {name} must have shape "
                                  f"{tuple(w.shape)}, got {shape}")
            if not torch.equal(g, w):
                raise WrongAnswer(f"{name} for {batch.tolist()}: expected {w.tolist()}, got {g.tolist()}")
        if not torch.equal(_got(got, f"{what}: input afterwards"), batch):
            raise WrongAnswer("make_inputs_targets must not change its input")
    return f"{len(SHIFT_CASES)} batches shifted correctly (x drops the last token, y the first)"


@exercise("06.1", title="shifted inputs and targets",
          hint="x = batch[:, :-1] (all but the last token), y = batch[:, 1:] (all but the first): "
               "y[:, t] is the token that follows x[:, t]",
          reference=["labsupport.checks.lab06:ref_make_inputs_targets"], judge=_judge_shift)
def drive_inputs_targets(t: Trace, make_inputs_targets: Callable) -> None:
    for batch in SHIFT_CASES:
        inp = batch.clone()
        out = make_inputs_targets(inp)
        if type(out) not in (tuple, list) or len(out) != 2:
            raise AssertionError(f"return a pair (x, y), got {type(out).__name__}")
        what = f"make_inputs_targets({batch.tolist()})"
        t.record(f"{what}: x", out[0])
        t.record(f"{what}: y", out[1])
        t.record(f"{what}: input afterwards", inp)


# ---------------------------------------------------------------------------------------------- 06.2


def _loss_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = _gen(1)
    cases = []
    for B, T, V, pad_id in [(2, 5, 7, 1), (3, 4, 11, 0), (1, 6, 5, 4), (4, 8, 13, 1)]:
        logits = torch.randn(B, T, V, generator=g) * 3
        targets = torch.randint(0, V, (B, T), generator=g)
        targets[0, T // 2:] = pad_id  # a padded tail
        if B > 2:
            targets[1] = pad_id  # a row that is all padding
        cases.append((logits, targets, pad_id))
    return cases


LOSS_CASES = _loss_cases()


def _judge_loss(got: Records, want: Records) -> str:
    for logits, targets, pad_id in LOSS_CASES:
        what = f"loss for logits {tuple(logits.shape)}, pad_id={pad_id}"
        g, w = _got(got, f"{what}: loss"), want[f"{what}: loss"].item()
        if type(g) is not torch.Tensor or g.dim() != 0:
            raise WrongAnswer(f"return a 0-d tensor (the mean loss), got {str(g)[:60]}")
        counted = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
        if math.isclose(g.item(), counted, rel_tol=1e-5) and not math.isclose(counted, w, rel_tol=1e-5):
            raise WrongAnswer(f"your loss {g.item():.4f} counts the pad positions (pad_id={pad_id}); "
                              f"without them it is {w:.4f}")
        _close(g, w, what)
        if _got(got, f"{what}: differentiable") is not True:
            raise WrongAnswer("the loss must stay differentiable (no .item(), no numpy)")
        if _got(got, f"{what}: largest gradient at a pad position") != 0.0:
            raise WrongAnswer("pad positions must get no gradient (they must not be in the loss at all)")
    return f"{len(LOSS_CASES)} losses match the reference and pads get no gradient"


@exercise("06.2", title="cross-entropy that ignores pads",
          hint="F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=pad_id): the mean over "
               "the non-pad targets only (or sum the per-token losses where targets != pad_id, divide by their count)",
          reference=["labsupport.lstm:lm_loss"], judge=_judge_loss)
def drive_masked_loss(t: Trace, masked_lm_loss: Callable) -> None:
    for logits, targets, pad_id in LOSS_CASES:
        what = f"loss for logits {tuple(logits.shape)}, pad_id={pad_id}"
        leaf = logits.clone().requires_grad_(True)
        got = masked_lm_loss(leaf, targets.clone(), pad_id)
        ok = type(got) is torch.Tensor
        t.record(f"{what}: loss", got.detach() if ok else got)
        t.record(f"{what}: differentiable", ok and got.requires_grad)
        pad_grad = float("inf")
        if ok and got.requires_grad and got.dim() == 0:
            got.backward()
            if leaf.grad is not None:
                pad_grad = float(leaf.grad[targets == pad_id].abs().max())
        t.record(f"{what}: largest gradient at a pad position", pad_grad)


# ---------------------------------------------------------------------------------------------- 06.3

PPL_CASES = [([2.0], [10]), ([1.0, 3.0], [1, 3]), ([4.2, 4.0, 5.5], [1000, 800, 13]), ([0.0, 0.0], [5, 7]),
             ([6.9, 1.2, 3.3, 2.8], [1, 250, 40, 9])]


def _judge_perplexity(got: Records, want: Records) -> str:
    for losses, counts in PPL_CASES:
        label = f"perplexity({losses}, {counts})"
        g, w = _got(got, label), want[label]
        naive = math.exp(sum(losses) / len(losses))
        if isinstance(g, float) and not math.isclose(naive, w, rel_tol=1e-6) and math.isclose(g, naive, rel_tol=1e-6):
            raise WrongAnswer(f"losses {losses} with token counts {counts}: you averaged the batch means "
                              f"({naive:.4f}); weighted by tokens it is {w:.4f}")
        _close(g, w, label, tol=1e-6)
    return f"{len(PPL_CASES)} perplexities match exp(token-weighted mean loss)"


@exercise("06.3", title="perplexity from batch losses",
          hint="weight each batch's mean loss by its number of tokens: exp(sum(loss_i * n_i) / sum(n_i)), "
               "not exp(mean of the batch means)",
          reference=["labsupport.lstm:perplexity"], judge=_judge_perplexity)
def drive_perplexity(t: Trace, perplexity_fn: Callable) -> None:
    for losses, counts in PPL_CASES:
        got = perplexity_fn(list(losses), list(counts))
        if type(got) is torch.Tensor and got.numel() == 1:
            got = got.item()
        t.record(f"perplexity({losses}, {counts})", float(got) if type(got) is int else got)


# ---------------------------------------------------------------------------------------------- 06.4

N_DRAWS = 20_000
SAMPLE_LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])  # the last token is masked out
GREEDY = torch.tensor([[0.1, 3.0, -2.0, 2.9], [5.0, -1.0, 4.0, 0.0], [-1.0, -2.0, -3.0, -0.5]])


def _judge_sampling(got: Records, want: Records) -> str:
    g = _got(got, "sample_with_temperature(logits (3, V), 0.0)")
    if type(g) is not torch.Tensor or g.shape != (3,):
        raise WrongAnswer(f"logits (3, V) must give 3 token ids (shape (3,)), got {str(g)[:80]}")
    if g.tolist() != [1, 0, 3]:
        raise WrongAnswer(f"temperature 0 must be greedy (argmax): expected [1, 0, 3], got {g.tolist()}")
    for temperature in (0.5, 1.0, 2.0):
        ids = _got(got, f"sample_with_temperature(logits ({N_DRAWS}, 5), {temperature})")
        if type(ids) is not torch.Tensor or ids.shape != (N_DRAWS,):
            raise WrongAnswer(f"logits of shape ({N_DRAWS}, 5) must give ids of shape ({N_DRAWS},), "
                              f"got {getattr(ids, 'shape', type(ids).__name__)}")
        if ids.is_floating_point():
            raise WrongAnswer("token ids must be integers")
        if ids.min() < 0 or ids.max() >= SAMPLE_LOGITS.size(-1):
            raise WrongAnswer(f"ids must be in 0..{SAMPLE_LOGITS.size(-1) - 1}, got {ids.min()}..{ids.max()}")
        if (ids == 4).any():
            raise WrongAnswer("a token whose logit is -inf was sampled: sample from softmax(logits / T)")
        freq = torch.bincount(ids.long(), minlength=5).double() / N_DRAWS
        w = torch.softmax(SAMPLE_LOGITS[0].double() / temperature, -1)
        if (freq - w).abs().max().item() > 0.02:  # about 6 standard errors at N = 20,000 draws
            raise WrongAnswer(f"at temperature {temperature} the token frequencies are {freq.tolist()!r:.80}; "
                              f"softmax(logits / T) is {[round(p, 3) for p in w.tolist()]}")
    return f"greedy at T=0 and frequencies match softmax(logits / T) at T = 0.5, 1, 2 ({N_DRAWS:,} draws each)"


@exercise("06.4", title="sampling with a temperature",
          hint="temperature 0: logits.argmax(-1); otherwise probs = softmax(logits / temperature, -1) and "
               "torch.multinomial(probs, 1, generator=generator)[:, 0]",
          reference=None, judge=_judge_sampling)
def drive_temperature_sampling(t: Trace, sample_with_temperature: Callable) -> None:
    t.record("sample_with_temperature(logits (3, V), 0.0)", sample_with_temperature(GREEDY.clone(), 0.0, _gen(0)))
    for temperature in (0.5, 1.0, 2.0):
        batch = SAMPLE_LOGITS.expand(N_DRAWS, -1).clone()  # (N, V): N independent draws in one call
        t.record(f"sample_with_temperature(logits ({N_DRAWS}, 5), {temperature})",
                 sample_with_temperature(batch, temperature, _gen(int(temperature * 10))))
