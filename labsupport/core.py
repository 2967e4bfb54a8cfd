"""Conventions every model, dataset and loop shares, defined once: the ignored-target id, perplexity,
the parameter count and the eval-mode switch.

    y[:prompt_len] = IGNORE_INDEX                  # these targets add nothing to the loss
    perplexity(2.3)                                # exp(loss): ~10
    perplexity(batch_losses, token_counts)         # exp of the token-weighted mean loss
    trainable, total = count_parameters(model)
    with eval_mode(model): ...                     # dropout off, the previous mode restored even on error

This module imports nothing else from labsupport: it is the bottom layer (see ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index: targets equal to it add nothing to the loss
MAX_LOG = 709.0  # exp(709) is the largest finite double: a perplexity never overflows


def perplexity(losses: float | Sequence[float] | torch.Tensor, counts: Sequence[int] | torch.Tensor | None = None
               ) -> float:
    """exp(mean loss in nats): the model is as unsure as a uniform choice among this many tokens.

    `losses`: one loss, or several (e.g. one mean per batch). With `counts` (the targets behind each loss) the
    mean is token-weighted, exp(total NLL / tokens); without, it is the plain mean, which over-weights short
    batches. Huge losses give exp(709) rather than an overflow.
    """
    values = torch.as_tensor(losses, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("no losses given: evaluate at least one batch first")
    if counts is None:
        mean = values.mean()
    else:
        weights = torch.as_tensor(counts, dtype=torch.float64).flatten()
        if weights.shape != values.shape:
            raise ValueError(f"need one token count per loss, got {values.numel()} losses and "
                             f"{weights.numel()} token counts")
        if weights.sum() <= 0:
            raise ValueError("the token counts sum to 0: there is nothing to average")
        mean = (values * weights).sum() / weights.sum()
    return math.exp(min(mean.item(), MAX_LOG))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts: every parameter tensor once, output heads included."""
    params = list(model.parameters())  # nn.Module.parameters() already yields a shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch `model` to eval mode (dropout off) inside the block; its previous mode is restored afterwards,
    also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


__all__ = ["IGNORE_INDEX", "count_parameters", "eval_mode", "perplexity"]
