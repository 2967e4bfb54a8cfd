"""The one precision policy every training and evaluation loop uses: ``amp(device)``.

- CUDA with compute capability >= 8.0 (A100, H100, L4, RTX 30xx+): bfloat16 autocast. bf16 has fp32's
  exponent range, so no loss scaling is needed.
- CUDA below 8.0 (Colab's T4 is 7.5): the GPU only *emulates* bf16 (no tensor cores), so float16 autocast,
  with a GradScaler when training (fp16's small range underflows gradients); float32 where fp16 is unsafe.
- GPT-Neo is never autocast: it computes attention scores in float32 on purpose (its unscaled QK^T overflows
  half precision), and autocast would run those matmuls in 16 bits again.
- CPU and MPS: float32 (CPU autocast is slower for these small models; MPS autocast is not needed here).

Logits that feed a loss or a perplexity are computed in float32 whatever the policy: ``fp32_logits``.

    policy = amp(device)                    # or amp(device, training=False), amp(device, model=model, enabled=...)
    scaler = policy.grad_scaler()           # a no-op unless the policy trains in fp16
    with policy.autocast():
        _, loss = model(x, y)
    scaler.scale(loss).backward(); scaler.unscale_(opt); clip ...; scaler.step(opt); scaler.update()
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

NO_AUTOCAST_MODELS = {"gpt_neo": "GPT-Neo keeps its attention scores in float32 on purpose"}


@dataclass(frozen=True)
class Precision:
    """What `amp` chose: the autocast dtype (None: float32), whether to scale gradients, and why."""

    device_type: str
    dtype: torch.dtype | None
    scale_grads: bool
    why: str

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.dtype]

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is active only for fp16 training (disabled, it passes everything through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scale_grads)

    def trainer_kwargs(self) -> dict[str, bool]:
        """The same choice as `transformers.TrainingArguments` flags (the HF Trainer scales fp16 itself)."""
        return {"bf16": self.dtype is torch.bfloat16, "fp16": self.dtype is torch.float16}


def amp(device: torch.device | str, *, training: bool = True, model: nn.Module | None = None,
        fp16_safe: bool = True, enabled: bool = True) -> Precision:
    """The precision policy for a loop on `device` (see the module docstring).

    `model`: a Hugging Face model whose type must not be autocast (GPT-Neo) gets float32. `fp16_safe=False`:
    the computation overflows float16, so a GPU without native bf16 runs it in float32. `enabled=False`: the
    caller turned mixed precision off (a loop's `amp=False`): float32."""
    device = torch.device(device)
    if not enabled:
        return Precision(device.type, None, False, "float32: amp is off")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if device.type != "cuda":
        return Precision(device.type, None, False, f"float32 on {device.type}")
    if model_type in NO_AUTOCAST_MODELS:
        return Precision("cuda", None, False, f"float32: {NO_AUTOCAST_MODELS[model_type]}")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) >= (8, 0):
        return Precision("cuda", torch.bfloat16, False, f"bf16 autocast: capability {major}.{minor} has native bf16")
    if not fp16_safe:
        return Precision("cuda", None, False, f"float32: capability {major}.{minor} only emulates bf16, fp16 unsafe")
    if training:
        return Precision("cuda", torch.float16, True,
                         f"fp16 autocast + GradScaler: capability {major}.{minor} only emulates bf16")
    return Precision("cuda", torch.float16, False, f"fp16 autocast: capability {major}.{minor} only emulates bf16")


def fp32_logits(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """head(hidden) computed in float32 even inside autocast: the logits a loss or perplexity is taken from.
    (Autocast would round them to 16 bits first; cross_entropy's own upcast comes too late.)"""
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        return head(hidden.float())


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  parameters, grad_clip: float | None) -> None:
    """backward + optional clipping + step, through `scaler` (a pass-through unless fp16 training):
    gradients are unscaled before clipping, and a step with inf/nan gradients is skipped."""
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()
