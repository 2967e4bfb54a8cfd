"""Run profiles, device choice, seeding, and headline numbers.

Every lab starts with ``cfg = labsupport.setup("NN_topic")``. Two separate knobs:

The **profile** decides where the lab's assets come from (see ``assets.py``):

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
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

PROFILES = ("full", "offline", "smoke")
SCALES = ("course", "laptop", "tiny")
COURSE_MIN_GPU_GB = 12  # Colab's T4 has 15 GB; smaller GPUs run the laptop sizes
HUB_HOST = "huggingface.co"


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face hub accepts a TCP connection within `timeout` seconds."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def validate_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def resolve_profile(profile: str | None = None) -> tuple[str, str]:
    """Return (profile, why). Explicit argument > $LABSUPPORT_PROFILE > auto-detection."""
    if profile is not None:
        return validate_profile(profile), "chosen by argument"
    env = os.environ.get("LABSUPPORT_PROFILE", "").strip()
    if env:
        return validate_profile(env), "chosen by $LABSUPPORT_PROFILE"
    if in_colab():
        return "full", "running in Colab"
    if os.environ.get("HF_HUB_OFFLINE") != "1" and hub_reachable():
        return "full", f"{HUB_HOST} answered"
    from labsupport import assets

    missing = assets.missing_offline_packages()
    if not missing:
        return "offline", f"{HUB_HOST} unreachable; offline assets are installed"
    return "smoke", (
        f"{HUB_HOST} unreachable and offline assets missing ({', '.join(missing)}); "
        'install them with pip install -e ".[offline]"'
    )


def apply_profile_env(profile: str) -> None:
    """Outside `full`, forbid hub calls so nothing hangs for 20-45 s before failing."""
    os.environ["LABSUPPORT_PROFILE"] = profile
    if profile != "full":
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def current_profile() -> str:
    """The active profile (as set by `setup`, or resolved now without the network probe printing)."""
    return resolve_profile()[0]


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

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"

    def summary(self) -> str:
        return (
            f"[labsupport] lab={self.lab} profile={self.profile} scale={self.scale} device={self.device} "
            f"seed={self.seed} "
            f"| python {platform.python_version()} torch {torch.__version__} "
            f"transformers {_version('transformers')}"
        )


def setup(
    lab: str, profile: str | None = None, seed: int = 0, device: str | None = None, scale: str | None = None
) -> LabConfig:
    """Resolve the profile, device and scale, seed everything, print what was chosen and why, return the config."""
    resolved, why = resolve_profile(profile)
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
    from labsupport.io import atomic_write_json

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
