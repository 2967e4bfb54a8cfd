"""The one checkpoint format of every training loop: model, optimizer, every RNG state and the loop's progress,
written atomically, so a resumed run continues exactly as if it had never stopped.

    save_checkpoint("ckpt.pt", model, optimizer, iter_num=500, losses=losses)   # Trainer.save does this
    progress = load_checkpoint("ckpt.pt", model, optimizer, expect="iter_num")  # Trainer.resume does this
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from labsupport.io import atomic_torch_save
from labsupport.runtime import rng_state, set_rng_state

CHECKPOINT_VERSION = 2  # 2: one format for every loop (model, optimizer, RNG states + the loop's own progress)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    **progress: Any) -> None:
    """The one checkpoint format: model, optimizer, every RNG state and the loop's `progress` (e.g. iter_num and
    losses, or epoch and history), written atomically (a killed run never leaves a half-written file)."""
    atomic_torch_save({"version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "rng": rng_state(), "progress": progress}, path)


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    expect: str | None = None,
                    check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote into `model` (and `optimizer`) and restore the RNG states, so the run
    continues exactly; returns the loop's progress. `expect`: a progress key the caller's loop writes; `check`:
    raises when the progress does not fit the caller (e.g. other training data). Both run before anything is
    loaded, so an unfit checkpoint is refused whole."""
    device = next(model.parameters()).device
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        found = ckpt.get("version") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a labsupport training checkpoint (version {found!r}; written by "
                         f"save_checkpoint / Trainer.save, read with load_checkpoint / Trainer.resume)")
    if expect is not None and expect not in ckpt["progress"]:
        raise ValueError(f"{path} was written by another loop (its progress holds {sorted(ckpt['progress'])}, "
                         f"no {expect!r})")
    if check is not None:
        check(ckpt["progress"])
    model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return ckpt["progress"]


__all__ = ["CHECKPOINT_VERSION", "load_checkpoint", "save_checkpoint"]
