"""Run profiles, device choice, seeding, and headline numbers.

Every lab starts with ``cfg = labsupport.setup("NN_topic")``. The profile decides which assets the
lab uses (see ``assets.py``) and how big it runs:

- ``full``    real hub models and datasets at course sizes (needs the Hugging Face hub);
- ``offline`` real models/data shipped by registry packages, no network at all;
- ``smoke``   tiny random models and small generated fixtures, seconds per notebook (CI, nbval).
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
    """What a notebook needs to know about its run: profile, device, seed, and per-profile sizes."""

    lab: str
    profile: str
    device: torch.device
    seed: int
    why: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def size(self, *, full: Any, offline: Any, smoke: Any) -> Any:
        """Pick the value for the active profile, e.g. ``cfg.size(full=2000, offline=300, smoke=20)``."""
        return {"full": full, "offline": offline, "smoke": smoke}[self.profile]

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"

    def summary(self) -> str:
        return (
            f"[labsupport] lab={self.lab} profile={self.profile} device={self.device} seed={self.seed} "
            f"| python {platform.python_version()} torch {torch.__version__} "
            f"transformers {_version('transformers')}"
        )


def setup(lab: str, profile: str | None = None, seed: int = 0, device: str | None = None) -> LabConfig:
    """Resolve the profile, pick the device, seed everything, print one line, return the config."""
    resolved, why = resolve_profile(profile)
    apply_profile_env(resolved)
    seed_everything(seed)
    cfg = LabConfig(lab=lab, profile=resolved, device=get_device(device), seed=seed, why=why)
    print(cfg.summary())
    print(f"[labsupport] profile {resolved}: {why}")
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
