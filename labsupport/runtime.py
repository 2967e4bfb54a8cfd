"""Run profiles, device choice, seeding, and headline numbers.

Every lab starts with ``cfg = labsupport.setup("NN_topic")``. Two separate knobs:

The **profile** decides where the lab's assets come from (see ``assets.py``; chosen in ``detect.py``):

- ``full``    real hub models and datasets (needs the Hugging Face hub);
- ``offline`` real models/data shipped by registry packages, no network at all;
- ``smoke``   tiny random models and small generated fixtures (CI, nbval).

The **scale** decides how big the lab runs, read through ``cfg.size(course=…, laptop=…, tiny=…)``:

- ``course``  the sizes the lab is designed for: a CUDA GPU with at least 12 GB (Colab's T4, A100, H100);
- ``laptop``  CPU-friendly sizes (CPU, Apple MPS, a small GPU): minutes per lab;
- ``tiny``    toy sizes, seconds per notebook; the default in ``smoke``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labsupport.detect import PROFILES, apply_profile_env, in_colab, resolve_profile, validate_profile
from labsupport.io import atomic_write_json

__all__ = [
    "PROFILES", "SCALES", "LabConfig", "apply_profile_env", "describe_device", "get_device",
    "in_colab", "record", "resolve_profile", "resolve_scale", "rng_state", "seed_everything", "set_rng_state",
    "setup", "validate_profile", "validate_scale",
]

SCALES = ("course", "laptop", "tiny")
COURSE_MIN_GPU_GB = 12  # Colab's T4 has 15 GB; smaller GPUs run the laptop sizes


def get_device(prefer: str | None = None) -> torch.device:
    """cuda > mps > cpu, unless `prefer` or $LABSUPPORT_DEVICE names one."""
    name = prefer or os.environ.get("LABSUPPORT_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A few words on the device: its name, memory and compute capability for CUDA."""
    if device.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {props.total_memory / 1e9:.0f} GB, compute capability {props.major}.{props.minor}"
    return {"mps": "Apple GPU (MPS)", "cpu": "CPU"}.get(device.type, device.type)


def validate_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    return scale


def resolve_scale(profile: str, device: torch.device, scale: str | None = None) -> tuple[str, str]:
    """Return (scale, why): the argument > $LABSUPPORT_SCALE > tiny in smoke > course on a big CUDA GPU > laptop."""
    if scale is not None:
        return validate_scale(scale), "chosen by argument"
    env = os.environ.get("LABSUPPORT_SCALE", "").strip()
    if env:
        return validate_scale(env), "chosen by $LABSUPPORT_SCALE"
    if profile == "smoke":
        return "tiny", "the smoke profile runs toy sizes (set $LABSUPPORT_SCALE to change)"
    if device.type == "cuda" and torch.cuda.is_available():
        gb = torch.cuda.get_device_properties(device).total_memory / 1e9  # decimal GB, as cards are sold
        if gb >= COURSE_MIN_GPU_GB:
            return "course", f"CUDA GPU with {gb:.0f} GB"
        return "laptop", f"CUDA GPU with only {gb:.0f} GB (course sizes want {COURSE_MIN_GPU_GB} GB)"
    why = f"no CUDA GPU ({device.type}): CPU-friendly sizes"
    if in_colab():
        why += "; for course sizes switch to a GPU runtime (Runtime > Change runtime type > T4 GPU)"
    return "laptop", why


def seed_everything(seed: int) -> None:
    """Seed `random`, numpy and torch (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG a lab uses (python, numpy, torch, cuda), in a form `torch.load(weights_only=True)` accepts."""
    kind, keys, *rest = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), *rest),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured, so a resumed run draws the same numbers as an uninterrupted one."""
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@dataclass
class LabConfig:
    """What a notebook needs to know about its run: profile (assets), scale (sizes), device, seed."""

    lab: str
    profile: str
    device: torch.device
    seed: int
    why: str = ""
    scale: str = "tiny"
    scale_why: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def size(self, *, course: Any, laptop: Any, tiny: Any) -> Any:
        """Pick the value for the active scale, e.g. ``cfg.size(course=2000, laptop=300, tiny=20)``."""
        return {"course": course, "laptop": laptop, "tiny": tiny}[self.scale]

    def summary(self) -> str:
        return (
            f"[labsupport] lab={self.lab} profile={self.profile} scale={self.scale} device={self.device} "
            f"seed={self.seed} "
            f"| python {platform.python_version()} torch {torch.__version__} "
            f"transformers {_version('transformers')}"
        )


def setup(
    lab: str, profile: str | None = None, seed: int = 0, device: str | None = None, scale: str | None = None,
    missing_offline: Callable[[], Sequence[str]] | None = None,
) -> LabConfig:
    """Resolve the profile, device and scale, seed everything, print what was chosen and why, return the config.

    `missing_offline`: see `detect.resolve_profile`; ``labsupport.setup`` passes ``assets.missing_offline_packages``.
    """
    resolved, why = resolve_profile(profile, missing_offline)
    apply_profile_env(resolved)
    seed_everything(seed)
    dev = get_device(device)
    chosen, scale_why = resolve_scale(resolved, dev, scale)
    cfg = LabConfig(lab=lab, profile=resolved, device=dev, seed=seed, why=why, scale=chosen, scale_why=scale_why)
    if device:
        device_why = "chosen by argument"
    elif os.environ.get("LABSUPPORT_DEVICE"):
        device_why = "chosen by $LABSUPPORT_DEVICE"
    else:
        device_why = "the best one found (cuda > mps > cpu)"
    print(cfg.summary())
    print(f"[labsupport] profile {resolved}: {why}")
    print(f"[labsupport] scale {chosen}: {scale_why}")
    print(f"[labsupport] device {dev}: {describe_device(dev)}; {device_why}")
    return cfg


class Recorded(dict):
    """The dict `record` returns: the numbers were printed already, so a notebook does not display it again."""

    def _ipython_display_(self) -> None:
        pass


def record(**numbers: Any) -> dict[str, Any]:
    """Record a lab's headline numbers (shown in `python -m labsupport run`'s summary table).

    Values are printed; when $LABSUPPORT_RESULTS names a JSON file (the runner sets it) they are
    merged into it atomically.
    """
    clean = {k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v) for k, v in numbers.items()}
    for value in clean.values():
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"record() takes str/int/float/bool values, got {type(value).__name__}")
    print("[labsupport] recorded " + ", ".join(f"{k}={v}" for k, v in clean.items()))
    path = os.environ.get("LABSUPPORT_RESULTS")
    if path:
        current = json.loads(open(path).read()) if os.path.exists(path) else {}
        current.update(clean)
        atomic_write_json(path, current)
    return Recorded(clean)
