"""Self-checks for Lab 06 (LSTM language model on IMDB). Each compares the student's function with the
reference in `labsupport.lstm` (or a one-line definition here) on small fixed inputs, edge cases included."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from labsupport.check import exercise
from labsupport.lstm import lm_loss, perplexity


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(got: object, want: float, what: str, tol: float = 1e-5) -> None:
    got = float(got.detach()) if isinstance(got, torch.Tensor) else got
    if not isinstance(got, float | int) or not math.isclose(got, want, rel_tol=tol, abs_tol=tol):
        raise AssertionError(f"{what}: expected {want:.6f}, got {got!r}")


# ---------------------------------------------------------------------------------------------- 06.1


@exercise("06.1", title="shifted inputs and targets",
          hint="x = batch[:, :-1] (all but the last token), y = batch[:, 1:] (all but the first): "
               "y[:, t] is the token that follows x[:, t]")
def check_inputs_targets(make_inputs_targets: Callable) -> str:
    cases = [torch.tensor([[2, 10, 11, 12, 3]]), torch.tensor([[2, 5, 3, 1, 1], [2, 7, 8, 9, 3]]),
             torch.randint(0, 50, (4, 9), generator=_gen(0)), torch.tensor([[2, 3]])]
    for batch in cases:
        before = batch.clone()
        out = make_inputs_targets(batch.clone())
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise AssertionError(f"return a pair (x, y), got {type(out).__name__}")
        x, y = out
        for name, got, want in (("x", x, batch[:, :-1]), ("y", y, batch[:, 1:])):
            if not isinstance(got, torch.Tensor) or got.shape != want.shape:
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                raise AssertionError(f"for a batch of shape {tuple(batch.shape)}, {name} must have shape "
                                     f"{tuple(want.shape)}, got {shape}")
            if not torch.equal(got, want):
                raise AssertionError(f"{name} for {batch.tolist()}: expected {want.tolist()}, got {got.tolist()}")
        if not torch.equal(batch, before):
            raise AssertionError("make_inputs_targets must not change its input")
    return f"{len(cases)} batches shifted correctly (x drops the last token, y the first)"


# ---------------------------------------------------------------------------------------------- 06.2


@exercise("06.2", title="cross-entropy that ignores pads",
          hint="F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=pad_id): the mean over "
               "the non-pad targets only (or sum the per-token losses where targets != pad_id, divide by their count)")
def check_masked_loss(masked_lm_loss: Callable) -> str:
    g = _gen(1)
    cases = []
    for B, T, V, pad_id in [(2, 5, 7, 1), (3, 4, 11, 0), (1, 6, 5, 4), (4, 8, 13, 1)]:
        logits = torch.randn(B, T, V, generator=g) * 3
        targets = torch.randint(0, V, (B, T), generator=g)
        targets[0, T // 2:] = pad_id  # a padded tail
        if B > 2:
            targets[1] = pad_id  # a row that is all padding
        cases.append((logits, targets, pad_id))
    for logits, targets, pad_id in cases:
        want = lm_loss(logits, targets, pad_id)
        leaf = logits.clone().requires_grad_(True)
        got = masked_lm_loss(leaf, targets.clone(), pad_id)
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"return a 0-d tensor (the mean loss), got {got!r:.60}")
        counted = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
        if math.isclose(got.item(), counted, rel_tol=1e-5) and not math.isclose(counted, want.item(), rel_tol=1e-5):
            raise AssertionError(f"your loss {got.item():.4f} counts the pad positions (pad_id={pad_id}); "
                                 f"without them it is {want.item():.4f}")
        _close(got, want.item(), f"loss for logits {tuple(logits.shape)}, pad_id={pad_id}")
        if not got.requires_grad:
            raise AssertionError("the loss must stay differentiable (no .item(), no numpy)")
        got.backward()
        if leaf.grad is None or leaf.grad[targets == pad_id].abs().max() > 0:
            raise AssertionError("pad positions must get no gradient (they must not be in the loss at all)")
    return f"{len(cases)} losses match the reference and pads get no gradient"


# ---------------------------------------------------------------------------------------------- 06.3


@exercise("06.3", title="perplexity from batch losses",
          hint="weight each batch's mean loss by its number of tokens: exp(sum(loss_i * n_i) / sum(n_i)), "
               "not exp(mean of the batch means)")
def check_perplexity(perplexity_fn: Callable) -> str:
    cases = [([2.0], [10]), ([1.0, 3.0], [1, 3]), ([4.2, 4.0, 5.5], [1000, 800, 13]), ([0.0, 0.0], [5, 7]),
             ([6.9, 1.2, 3.3, 2.8], [1, 250, 40, 9])]
    for losses, counts in cases:
        want = perplexity(losses, counts)
        got = perplexity_fn(list(losses), list(counts))
        naive = math.exp(sum(losses) / len(losses))
        got_f = float(got) if isinstance(got, int | float | torch.Tensor) else got
        if isinstance(got_f, float) and not math.isclose(naive, want, rel_tol=1e-6) \
                and math.isclose(got_f, naive, rel_tol=1e-6):
            raise AssertionError(f"losses {losses} with token counts {counts}: you averaged the batch means "
                                 f"({naive:.4f}); weighted by tokens it is {want:.4f}")
        _close(got_f, want, f"perplexity({losses}, {counts})", tol=1e-6)
    return f"{len(cases)} perplexities match exp(token-weighted mean loss)"


# ---------------------------------------------------------------------------------------------- 06.4

N_DRAWS = 20_000


@exercise("06.4", title="sampling with a temperature",
          hint="temperature 0: logits.argmax(-1); otherwise probs = softmax(logits / temperature, -1) and "
               "torch.multinomial(probs, 1, generator=generator)[:, 0]")
def check_temperature_sampling(sample_with_temperature: Callable) -> str:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])  # the last token is masked out
    greedy = torch.tensor([[0.1, 3.0, -2.0, 2.9], [5.0, -1.0, 4.0, 0.0], [-1.0, -2.0, -3.0, -0.5]])
    got = sample_with_temperature(greedy.clone(), 0.0, _gen(0))
    if not isinstance(got, torch.Tensor) or got.shape != (3,):
        raise AssertionError(f"logits (3, V) must give 3 token ids (shape (3,)), got {got!r:.80}")
    if got.tolist() != [1, 0, 3]:
        raise AssertionError(f"temperature 0 must be greedy (argmax): expected [1, 0, 3], got {got.tolist()}")
    for temperature in (0.5, 1.0, 2.0):
        batch = logits.expand(N_DRAWS, -1).clone()  # (N, V): N independent draws in one call
        ids = sample_with_temperature(batch, temperature, _gen(int(temperature * 10)))
        if not isinstance(ids, torch.Tensor) or ids.shape != (N_DRAWS,):
            raise AssertionError(f"logits of shape {tuple(batch.shape)} must give ids of shape ({N_DRAWS},), "
                                 f"got {getattr(ids, 'shape', type(ids).__name__)}")
        if ids.min() < 0 or ids.max() >= logits.size(-1):
            raise AssertionError(f"ids must be in 0..{logits.size(-1) - 1}, got {ids.min()}..{ids.max()}")
        if (ids == 4).any():
            raise AssertionError("a token whose logit is -inf was sampled: sample from softmax(logits / T)")
        freq = torch.bincount(ids.long(), minlength=5).double() / N_DRAWS
        want = torch.softmax(logits[0].double() / temperature, -1)
        worst = (freq - want).abs().max().item()
        if worst > 0.02:  # about 6 standard errors at N = 20,000 draws
            raise AssertionError(f"at temperature {temperature} the token frequencies are {freq.tolist()!r:.80}; "
                                 f"softmax(logits / T) is {[round(p, 3) for p in want.tolist()]}")
    return f"greedy at T=0 and frequencies match softmax(logits / T) at T = 0.5, 1, 2 ({N_DRAWS:,} draws each)"
