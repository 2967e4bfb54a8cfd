"""labsupport: the tested support package behind the Transformer Labs notebooks."""

from labsupport import assets, runtime
from labsupport.check import check
from labsupport.runtime import LabConfig, get_device, record, seed_everything


def setup(lab: str, profile: str | None = None, seed: int = 0, device: str | None = None,
          scale: str | None = None) -> LabConfig:
    """Every lab's first call: resolve the profile (`offline` when its packages are installed), device and
    scale, seed everything, print what was chosen and why (see `labsupport.runtime.setup`)."""
    return runtime.setup(lab, profile, seed, device, scale, missing_offline=assets.missing_offline_packages)


__all__ = ["LabConfig", "check", "get_device", "record", "seed_everything", "setup"]
__version__ = "0.1.0"
# Colab installs and opens the notebooks of this git tag, so the package a student gets matches the notebook
# they opened. Written only here: `python -m labsupport refresh` writes it into every notebook's install cell
# and Colab badge, tests/test_colab.py checks them. Releasing = bump the version, refresh, tag the commit.
REPO_URL = "https://github.com/transformer-labs/transformer-labs"
RELEASE = f"v{__version__}"
