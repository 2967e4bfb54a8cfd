"""labsupport: the tested support package behind the Transformer Labs notebooks."""

from labsupport.check import check
from labsupport.runtime import LabConfig, get_device, record, seed_everything, setup

__all__ = ["LabConfig", "check", "get_device", "record", "seed_everything", "setup"]
__version__ = "0.1.0"
