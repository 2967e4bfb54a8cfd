"""Choosing the profile: where a lab's assets come from (``full`` hub, ``offline`` packages, ``smoke``).

The argument > ``$LABSUPPORT_PROFILE`` > an offline switch (any spelling ``huggingface_hub``, ``transformers`` or
``datasets`` honour) > Colab (``full``) > one probe of the configured hub endpoint. The probe asks
``huggingface_hub``'s own endpoint (``constants.ENDPOINT``, i.e. ``$HF_ENDPOINT`` for a mirror) through its own
HTTP client (so proxies, certificates and a custom client factory apply), runs in a thread and is given up
after ``PROBE_DEADLINE_S`` seconds, name resolution included. It runs at most once per process: a flapping
network cannot mix a ``full`` tokenizer with a ``smoke`` model.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence

from huggingface_hub import constants
from huggingface_hub.utils import get_session

PROFILES = ("full", "offline", "smoke")
PROBE_DEADLINE_S = 3.0
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES (transformers: the same)
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
INSTALL_OFFLINE = "python -m labsupport install-offline"

_lock = threading.Lock()
_probed: tuple[bool, str] | None = None  # the one hub probe of this process: (answered, what happened)


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def offline_switch() -> str | None:
    """The offline variable that is set (``HF_HUB_OFFLINE=yes`` ...), or None."""
    for var in OFFLINE_VARS:
        value = os.environ.get(var)
        if value is not None and value.strip().upper() in TRUE_VALUES:
            return f"{var}={value}"
    return None


def hub_endpoint() -> str:
    return constants.ENDPOINT


def probe_hub(deadline: float = PROBE_DEADLINE_S) -> tuple[bool, str]:
    """(answered, what happened): one GET of the hub endpoint's front page, abandoned after `deadline` seconds.

    The request runs in a daemon thread, so a resolver or proxy that hangs costs at most `deadline`."""
    endpoint = hub_endpoint()
    result: dict[str, object] = {}

    def ask() -> None:
        try:
            # GET, not HEAD (a mirror such as olah routes only GET /); the body is never read
            with get_session().stream("GET", endpoint, timeout=deadline) as response:
                result["status"] = response.status_code
        except Exception as err:  # DNS failure, refused, proxy error, TLS ...
            result["error"] = f"{type(err).__name__}: {str(err).strip()[:120]}"

    start = time.perf_counter()
    worker = threading.Thread(target=ask, name="labsupport-hub-probe", daemon=True)
    worker.start()
    worker.join(deadline)
    took = time.perf_counter() - start
    if worker.is_alive():
        return False, f"{endpoint} did not answer within {deadline:.0f} s (name lookup included)"
    if "status" in result and int(result["status"]) < 400:  # redirects are followed; a 4xx/5xx is a proxy's
        return True, f"{endpoint} answered (HTTP {result['status']}) in {took:.1f} s"
    return False, f"{endpoint} unreachable ({result.get('error') or 'HTTP ' + str(result.get('status'))})"


def missing_offline_message(missing: list[str]) -> str:
    return (f"offline assets missing ({', '.join(missing)}); to use real models without network run "
            f"`{INSTALL_OFFLINE}` (it pip-installs all of them), or give the machine network for `full`")


def _offline_or_smoke(reason: str, missing_offline: Callable[[], Sequence[str]] | None) -> tuple[str, str]:
    if missing_offline is None:
        return "smoke", f"{reason}; offline assets not checked (pass missing_offline, as labsupport.setup does)"
    missing = list(missing_offline())
    if not missing:
        return "offline", f"{reason}; offline assets are installed"
    return "smoke", f"{reason}; {missing_offline_message(missing)}"


def validate_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def resolve_profile(profile: str | None = None,
                    missing_offline: Callable[[], Sequence[str]] | None = None) -> tuple[str, str]:
    """Return (profile, why). The network is probed at most once per process (the answer is remembered).

    `missing_offline()` lists the offline packages that are not installed (`assets.missing_offline_packages`):
    this layer knows nothing about assets, so callers pass it in; without it, `offline` is never chosen.
    """
    global _probed
    if profile is not None:
        return validate_profile(profile), "chosen by argument"
    env = os.environ.get("LABSUPPORT_PROFILE", "").strip()
    if env:
        return validate_profile(env), "chosen by $LABSUPPORT_PROFILE"
    switch = offline_switch()
    if switch:
        return _offline_or_smoke(f"{switch} forbids hub calls", missing_offline)
    if in_colab():
        return "full", "running in Colab"
    with _lock:
        if _probed is None:
            _probed = probe_hub()
        answered, what = _probed
    return ("full", what) if answered else _offline_or_smoke(what, missing_offline)


def forget_detection() -> None:
    """Probe again on the next `resolve_profile` (tests)."""
    global _probed
    with _lock:
        _probed = None


def apply_profile_env(profile: str) -> None:
    """Outside `full`, forbid hub calls so nothing hangs for 20-45 s before failing.

    huggingface_hub and datasets read their offline switch when first imported; if they already are (the
    probe imports huggingface_hub), their module-level flags are switched too."""
    os.environ["LABSUPPORT_PROFILE"] = profile
    if profile == "full":
        return
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    if "huggingface_hub.constants" in sys.modules:
        sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True
    if "datasets.config" in sys.modules:
        config = sys.modules["datasets.config"]
        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = True
