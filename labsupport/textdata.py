"""Text -> token ids -> training batches, for the word- and character-level language models (Labs 04, 06, 07).

- `load_corpus` reads WikiText-2 (raw) through the assets layer, so every profile uses one code path.
- `WordVocab` / `CharVocab` map tokens to ids. The four special tokens always have the same ids:
  ``<unk>`` = 0, ``<pad>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3; regular tokens follow from id 4.
- `LanguageModelingDataset` cuts one long token stream into (x, y) pairs shifted by one (teacher forcing).
- `encode_documents`, `lm_collate_fn` and `BucketBatchSampler` handle variable-length documents: targets are
  padded with the loss's ignore index (-100), never with a real token, so padding never counts in the loss.
"""

from __future__ import annotations

import json
import numbers
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from labsupport.assets import load_dataset
from labsupport.core import IGNORE_INDEX
from labsupport.io import atomic_write_json

UNK, PAD, BOS, EOS = "<unk>", "<pad>", "<bos>", "<eos>"
SPECIALS = (UNK, PAD, BOS, EOS)
UNK_ID, PAD_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
LEVELS = ("word", "char")


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def load_corpus(split: str = "train", level: str = "word", profile: str | None = None) -> str:
    """One split of the course corpus as a single string, lines kept (each ends with a newline).

    The `wikitext-2` asset: WikiText-2 (raw variant) in `full`, Shakespeare's plays in `offline`, a small
    generated corpus in the same format in `smoke`. Both levels read the same raw text: `WordVocab` splits
    it on whitespace, `CharVocab` keeps every character. `level` is validated so a typo fails here rather
    than in the vocabulary.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return "".join(load_dataset("wikitext-2", split, profile=profile)["text"])


# ---------------------------------------------------------------------------------------------- vocabularies


class Vocab:
    """Token <-> id mapping with the four specials first. Subclasses define `tokenize` and the join string."""

    kind = ""  # "word" | "char", stored in the JSON file
    joiner = ""
    unk_id, pad_id, bos_id, eos_id = UNK_ID, PAD_ID, BOS_ID, EOS_ID

    def __init__(self, tokens: Iterable[str], lowercase: bool = False):
        tokens = list(tokens)
        clash = [t for t in tokens if t in SPECIALS]
        if clash:
            raise ValueError(f"tokens must not include the special tokens {clash}; they are added automatically")
        self.itos: list[str] = [*SPECIALS, *tokens]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dupes = sorted(t for t, n in Counter(tokens).items() if n > 1)[:5]
            raise ValueError(f"tokens must be unique; duplicated: {dupes}")
        self.lowercase = bool(lowercase)

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    @classmethod
    def _count(cls, texts: str | Iterable[str], lowercase: bool) -> Counter:
        raise NotImplementedError

    @classmethod
    def build(cls, texts: str | Iterable[str], min_freq: int = 1, max_size: int | None = None,
              lowercase: bool = False) -> Vocab:
        """Count tokens in `texts` (one string or an iterable of strings) in a single pass and keep:

        - every token whose count is **>= min_freq** (so "frequency > 5" is ``min_freq=6``);
        - then at most `max_size` of them, the most frequent first. `max_size` counts regular tokens only:
          ``len(vocab) <= max_size + 4`` because the four specials are always added.

        Ties are ordered by the token string, so the result never depends on text order.
        """
        if not _is_int(min_freq, 1):
            raise ValueError(f"min_freq must be an integer >= 1 (keeps tokens counted >= min_freq), got {min_freq!r}")
        if max_size is not None and not _is_int(max_size, 0):
            raise ValueError(f"max_size must be None or an integer >= 0 (regular tokens, specials excluded), "
                             f"got {max_size!r}")
        counts = cls._count(texts, lowercase)
        for special in SPECIALS:  # literal "<unk>" etc. in the text map to the special ids, not new entries
            counts.pop(special, None)
        kept = sorted(((t, n) for t, n in counts.items() if n >= min_freq), key=lambda tn: (-tn[1], tn[0]))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([t for t, _ in kept], lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={len(self)}, lowercase={self.lowercase})"

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; tokens not in the vocabulary become ``<unk>`` (id 0)."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}; use encode_documents for a list")
        get = self.stoi.get
        return [get(t, UNK_ID) for t in self.tokenize(text)]

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_specials: bool = False) -> str:
        """Tokens of `ids` joined by the level's separator (" " for words, "" for characters)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() > 1:
                raise ValueError(f"decode takes one sequence (1-D), got a tensor of shape {tuple(ids.shape)}")
            ids = ids.tolist()
        n = len(self.itos)
        out = []
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"id {i} is outside the vocabulary (valid ids are 0..{n - 1})")
            if skip_specials and i < len(SPECIALS):
                continue
            out.append(self.itos[i])
        return self.joiner.join(out)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically: a crash never leaves a half-written file)."""
        atomic_write_json(path, {"kind": self.kind, "lowercase": self.lowercase, "itos": self.itos})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Read a file written by `save`. ``Vocab.load`` returns the saved kind; a subclass checks it matches."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        kinds = {c.kind: c for c in (WordVocab, CharVocab)}
        if not isinstance(data, dict) or data.get("kind") not in kinds or "itos" not in data:
            raise ValueError(f"{path} is not a vocabulary file written by Vocab.save")
        target = kinds[data["kind"]]
        if cls is not Vocab and cls is not target:
            raise ValueError(f"{path} holds a {data['kind']} vocabulary; load it with {target.__name__}.load")
        if tuple(data["itos"][: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"{path}: the first ids must be the specials {SPECIALS}")
        return target(data["itos"][len(SPECIALS):], lowercase=data.get("lowercase", False))


class WordVocab(Vocab):
    """Words = whitespace-separated tokens (`str.split()`), optionally lowercased."""

    kind = "word"
    joiner = " "

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    @classmethod
    def _count(cls, texts: str | Iterable[str], lowercase: bool) -> Counter:
        counts: Counter = Counter()
        for text in [texts] if isinstance(texts, str) else texts:
            counts.update((text.lower() if lowercase else text).split())  # C-speed counting, one text at a time
        return counts


class CharVocab(Vocab):
    """Characters, whitespace and newlines included."""

    kind = "char"
    joiner = ""

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    @classmethod
    def _count(cls, texts: str | Iterable[str], lowercase: bool) -> Counter:
        counts: Counter = Counter()
        for text in [texts] if isinstance(texts, str) else texts:
            counts.update(text.lower() if lowercase else text)
        return counts


# ---------------------------------------------------------------------------------------------- datasets


class LanguageModelingDataset(Dataset):
    """A token stream cut into chunks of ``seq_len + 1`` tokens; item i is ``(x, y) = (chunk[:-1], chunk[1:])``.

    Consecutive chunks start `stride` tokens apart (default `seq_len`: chunks share one boundary token, so
    every token after the first is a target exactly once). Items are LongTensors of shape (seq_len,),
    so this works with a DataLoader and with the lab GPT Trainer (a map-style dataset of (x, y)).
    """

    def __init__(self, ids: Sequence[int] | torch.Tensor, seq_len: int, stride: int | None = None):
        if not _is_int(seq_len, 1):
            raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}")
        stride = seq_len if stride is None else stride
        if not _is_int(stride, 1):
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        self.ids = torch.as_tensor(ids, dtype=torch.long).flatten()  # (N,)
        if len(self.ids) < seq_len + 1:
            raise ValueError(f"need at least seq_len + 1 = {seq_len + 1} tokens, got {len(self.ids)}; "
                             f"use a shorter seq_len or more text")
        self.seq_len, self.stride = seq_len, stride
        self.n = (len(self.ids) - seq_len - 1) // stride + 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} sequences")
        chunk = self.ids[i * self.stride: i * self.stride + self.seq_len + 1]  # (seq_len + 1,)
        return chunk[:-1], chunk[1:]


def encode_documents(texts: Iterable[str], vocab: Vocab, max_len: int, add_bos_eos: bool = True,
                     pad_to: int | None = None) -> list[list[int]]:
    """Encode each document, truncated so that its final length (specials included) is at most `max_len`.

    With `add_bos_eos` every sequence is ``<bos> tokens... <eos>`` (the content is cut to ``max_len - 2``).
    With `pad_to`, every sequence is right-padded with ``<pad>`` to exactly `pad_to` tokens
    (``torch.tensor(result)`` is then a (N, pad_to) batch).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings (documents), not one str; wrap it: [text]")
    n_special = 2 if add_bos_eos else 0
    if not _is_int(max_len, n_special + 1):
        raise ValueError(f"max_len must be an integer >= {n_special + 1} (room for one token"
                         f"{' plus <bos>/<eos>' if add_bos_eos else ''}), got {max_len!r}")
    if pad_to is not None and not _is_int(pad_to, max_len):
        raise ValueError(f"pad_to must be None or an integer >= max_len ({max_len}), got {pad_to!r}")
    out = []
    for text in texts:
        ids = vocab.encode(text)[: max_len - n_special]
        if add_bos_eos:
            ids = [BOS_ID, *ids, EOS_ID]
        if pad_to is not None:
            ids += [PAD_ID] * (pad_to - len(ids))
        out.append(ids)
    return out


def lm_collate_fn(pad_id: int = PAD_ID, ignore_index: int = IGNORE_INDEX) -> Callable[[list], tuple]:
    """A DataLoader `collate_fn` for variable-length language-modelling examples.

    Each example is either an ``(x, y)`` pair or one token sequence ``s`` (then ``x, y = s[:-1], s[1:]``).
    Returns ``(x, y)`` of shape (B, T) with T the longest x: inputs right-padded with `pad_id`, targets with
    `ignore_index`, so ``F.cross_entropy(..., ignore_index=ignore_index)`` skips every padded position.
    With right padding and a causal model the real positions never see a pad, so the loss equals the
    loss on the unpadded sequences.
    """

    def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        if len(batch) == 0:
            raise ValueError("cannot collate an empty batch")
        xs, ys = [], []
        for item in batch:
            if isinstance(item, (tuple, list)) and len(item) == 2 and not isinstance(item[0], numbers.Integral):
                x, y = (torch.as_tensor(t, dtype=torch.long) for t in item)
            else:
                seq = torch.as_tensor(item, dtype=torch.long)
                if seq.dim() != 1 or len(seq) < 2:
                    raise ValueError(f"each example must be an (x, y) pair or a 1-D sequence of >= 2 tokens, "
                                     f"got shape {tuple(seq.shape)}")
                x, y = seq[:-1], seq[1:]
            if x.shape != y.shape or x.dim() != 1:
                raise ValueError(f"x and y must be 1-D and the same length, got {tuple(x.shape)} and {tuple(y.shape)}")
            xs.append(x)
            ys.append(y)
        T = max(len(x) for x in xs)
        X = torch.full((len(xs), T), pad_id, dtype=torch.long)  # (B, T)
        Y = torch.full((len(xs), T), ignore_index, dtype=torch.long)  # (B, T)
        for b, (x, y) in enumerate(zip(xs, ys)):
            X[b, : len(x)] = x
            Y[b, : len(y)] = y
        return X, Y

    return collate


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths (fewer pads), for ``DataLoader(ds, batch_sampler=...)``.

    With `shuffle`, indices are shuffled, split into pools of ``batch_size * pool_factor``, sorted by length
    inside each pool, cut into batches, and the batch order is shuffled. Each pass over the sampler is a new
    epoch with its own seed (``seed + epoch``; `set_epoch` sets it), so runs are reproducible.
    Without `shuffle`, all indices are sorted by length once. Every index appears exactly once per epoch
    (unless `drop_last` drops a final short batch).
    """

    def __init__(self, lengths: Sequence[int] | torch.Tensor, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, pool_factor: int = 50):
        if not _is_int(batch_size, 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not _is_int(pool_factor, 1):
            raise ValueError(f"pool_factor must be an integer >= 1, got {pool_factor!r}")
        self.lengths = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
        if len(self.lengths) == 0:
            raise ValueError("lengths is empty: nothing to sample")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last, self.pool_factor = drop_last, pool_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.lengths), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        key = self.lengths.__getitem__
        if not self.shuffle:
            idx.sort(key=key)  # stable: equal lengths keep index order
            return [idx[i: i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed + self.epoch)
        rng.shuffle(idx)
        pool = self.batch_size * self.pool_factor
        batches = []
        for start in range(0, len(idx), pool):
            chunk = sorted(idx[start: start + pool], key=key)
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        yield from batches


def pad_fraction(batches: Iterable[list[int]], lengths: Sequence[int]) -> float:
    """Share of padded positions when each batch is padded to its longest sequence (to compare samplers)."""
    padded = real = 0
    for batch in batches:
        lens = [lengths[i] for i in batch]
        padded += max(lens) * len(lens)
        real += sum(lens)
    return 1 - real / padded if padded else 0.0


__all__: list[str] = [
    "BOS", "BOS_ID", "EOS", "EOS_ID", "IGNORE_INDEX", "PAD", "PAD_ID", "SPECIALS", "UNK", "UNK_ID",
    "BucketBatchSampler", "CharVocab", "LanguageModelingDataset", "Vocab", "WordVocab", "encode_documents",
    "lm_collate_fn", "load_corpus", "pad_fraction",
]
