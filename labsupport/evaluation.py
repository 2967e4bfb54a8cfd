"""The one evaluation of every lab model: token-weighted mean loss, count, perplexity and accuracy.

    evaluate(model, DataLoader(test_dataset, batch_size=256))   # {"loss", "count", "perplexity", "accuracy"}
    evaluate(classifier, loader, loss_fn=F.cross_entropy)       # another loss on the same logits

Models are called as `model(x, y) -> (logits, loss)`; targets equal to IGNORE_INDEX are not scored. Dropout is
off (core.eval_mode) and precision comes from `labsupport.precision.amp`. The Trainer's evaluation, Lab 04's
`lmtrain.evaluate_lm`, Lab 06 and Lab 07's fine-tune all use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

from labsupport import precision
from labsupport.core import IGNORE_INDEX, eval_mode, perplexity


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
             | None = None, *, max_batches: int | None = None, amp: bool = True) -> dict[str, float]:
    """The one evaluation: token-weighted mean loss over `loader`'s (x, y) batches, dropout off.

    Every target that is not IGNORE_INDEX counts once (a next token, a state, a class label), so batches with
    fewer targets weigh less. `loss_fn(logits, y)` (a mean over the counted targets) replaces the model's own
    loss. Returns {"loss", "count" (targets scored), "perplexity" (exp of the loss), "accuracy" (share of
    counted targets whose largest logit is the target)}. Reads at most `max_batches` batches.
    """
    device = next(model.parameters()).device
    policy = precision.amp(device, training=False, model=model, enabled=amp)
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed NLL, kept on the device: no sync per batch
    hits = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    with eval_mode(model):
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            n = int((y != IGNORE_INDEX).sum())  # counted on the loader's (CPU) copy
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with policy.autocast():
                logits, loss = model(x, y)[:2]
                if loss_fn is not None:
                    loss = loss_fn(logits, y)
            total += loss.double() * n
            hits += ((logits.argmax(-1) == y) & (y != IGNORE_INDEX)).sum()
            count += n
    if count == 0:
        raise ValueError("nothing to evaluate: the loader is empty or every target is IGNORE_INDEX")
    mean = total.item() / count
    return {"loss": mean, "count": count, "perplexity": perplexity(mean), "accuracy": hits.item() / count}


__all__ = ["evaluate"]
