"""Lab 06's pipeline (IMDB reviews): review cleaning, a word-level LSTM language model, its length-bucketed
batches, the unigram baseline and sampling. It trains with labsupport.trainer and evaluates with
labsupport.evaluation.

    config = LSTMLanguageModel.get_default_config()
    config.vocab_size = len(vocab)
    model = LSTMLanguageModel(config)                 # embedding -> LSTM -> linear, logits (B, T, V)
    train = make_loader(sequences, batch_size=128)    # (x, y) batches, targets padded with IGNORE_INDEX
    trainer = Trainer(train_config, model, train, test)   # labsupport.trainer: epochs over the loader

The loss and perplexity count only real tokens: every padded target holds IGNORE_INDEX (-100), the
cross-entropy's `ignore_index` (the model's loss also ignores targets equal to the pad id). Sequences come
from `textdata.encode_documents` (``<bos> ... <eos>``). `perplexity` is labsupport.core's (exercise 06.3's reference).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from labsupport.config import CfgNode
from labsupport.core import IGNORE_INDEX, count_parameters, perplexity
from labsupport.generate import generate
from labsupport.io import atomic_torch_save
from labsupport.precision import fp32_logits
from labsupport.textdata import BOS_ID, PAD_ID, UNK_ID, BucketBatchSampler, Vocab, lm_collate_fn

SUPPRESS_IDS = (UNK_ID, PAD_ID, BOS_ID)  # never generated: <unk> is not a word, <pad>/<bos> never follow text
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_review(text: str) -> str:
    """Replace the HTML line breaks of IMDB reviews (``<br />``, ``<br/>``, ``<br>``) by a space.

    Left in, whitespace tokenization glues them to words ("it.<br", "/><br", "/>the"): junk tokens
    that are among the most frequent in the corpus and split one word into several vocabulary entries.
    """
    if not isinstance(text, str):
        raise TypeError(f"clean_review takes one review (str), got {type(text).__name__}")
    return _BR.sub(" ", text)


# ---------------------------------------------------------------------------------------------- the model


class LSTMLanguageModel(nn.Module):
    """Embedding (padding_idx = pad) -> LSTM (batch_first) -> Linear to the vocabulary."""

    @staticmethod
    def get_default_config() -> CfgNode:
        C = CfgNode()
        C.vocab_size = None  # required: len(vocab)
        C.embed_dim = 300
        C.hidden_size = 256
        C.num_layers = 1
        C.dropout = 0.0  # on the LSTM outputs (and between layers when num_layers > 1)
        C.pad_id = PAD_ID  # its embedding stays zero; targets equal to it are ignored by the loss, like IGNORE_INDEX
        return C

    def __init__(self, config: CfgNode):
        super().__init__()
        C = LSTMLanguageModel.get_default_config().merge_from_dict(config.to_dict())
        if not isinstance(C.vocab_size, int) or C.vocab_size < 2:
            raise ValueError(f"config.vocab_size must be an integer >= 2 (set it to len(vocab)), got {C.vocab_size!r}")
        for key in ("embed_dim", "hidden_size", "num_layers"):
            if not isinstance(getattr(C, key), int) or getattr(C, key) < 1:
                raise ValueError(f"config.{key} must be an integer >= 1, got {getattr(C, key)!r}")
        if not 0 <= C.pad_id < C.vocab_size:
            raise ValueError(f"config.pad_id must be a token id in 0..{C.vocab_size - 1}, got {C.pad_id!r}")
        if not 0 <= C.dropout < 1:
            raise ValueError(f"config.dropout must be in [0, 1), got {C.dropout!r}")
        self.config, self.pad_id = C, C.pad_id
        self.embedding = nn.Embedding(C.vocab_size, C.embed_dim, padding_idx=C.pad_id)
        self.lstm = nn.LSTM(C.embed_dim, C.hidden_size, C.num_layers, batch_first=True,
                            dropout=C.dropout if C.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(C.dropout)
        self.head = nn.Linear(C.hidden_size, C.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> (logits (B, T, V), loss or None); the loss skips IGNORE_INDEX and pad targets."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
            got = f"{tuple(idx.shape)} {idx.dtype}" if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx must be a LongTensor of token ids with shape (B, T), got {got}")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        V = self.config.vocab_size
        if idx.device.type == "cpu" and idx.numel() and not 0 <= int(idx.min()) <= int(idx.max()) < V:
            raise ValueError(f"token ids must be in 0..{V - 1}, got ids {int(idx.min())}..{int(idx.max())}")
        x = self.embedding(idx)  # (B, T, E)
        # Autocast would run cuDNN's LSTM in float16 whatever dtype it was given: the recurrence (a long running
        # sum in the cell state) stays float32. The logits feed the loss, so they are float32 too (fp32_logits).
        with torch.autocast(device_type=idx.device.type, enabled=False):
            h, _ = self.lstm(x.float())  # (B, T, H)
        logits = fp32_logits(self.head, self.drop(h))  # (B, T, V)
        loss = None if targets is None else lm_loss(logits, targets, self.pad_id)
        return logits, loss

    def num_parameters(self) -> int:
        """Every parameter, the output layer included (labsupport.core.count_parameters)."""
        return count_parameters(self)[1]

    def save(self, path: str | os.PathLike) -> None:
        """Write the config and state dict (atomically); `LSTMLanguageModel.load(path)` rebuilds the model."""
        atomic_torch_save({"config": self.config.to_dict(), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LSTMLanguageModel:
        data = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(data, dict) or "config" not in data or "state_dict" not in data:
            raise ValueError(f"{path} was not written by LSTMLanguageModel.save (a training checkpoint? "
                             f"use Trainer.resume or labsupport.checkpoint.load_checkpoint)")
        model = cls(CfgNode(**data["config"]))
        model.load_state_dict(data["state_dict"])
        return model


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """Mean cross-entropy over the targets that are neither IGNORE_INDEX nor `pad_id`: logits (B, T, V),
    targets (B, T) -> scalar."""
    targets = targets.masked_fill(targets == pad_id, IGNORE_INDEX)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def unigram_perplexity(train: Iterable[Sequence[int]], test: Iterable[Sequence[int]], vocab_size: int,
                       pad_id: int = PAD_ID) -> float:
    """The baseline to beat: perplexity on `test` of add-one-smoothed word frequencies counted on `train`.

    Like the LM, it predicts every token after the first of each sequence (``<bos>`` is never a target).
    """
    def targets(seqs):
        ids = torch.cat([torch.as_tensor(s[1:], dtype=torch.long) for s in seqs])
        return ids[ids != pad_id]

    counts = torch.bincount(targets(train), minlength=vocab_size).double() + 1  # (V,)
    logp = (counts / counts.sum()).log()
    return math.exp(-float(logp[targets(test)].mean()))


# ---------------------------------------------------------------------------------------------- data


def make_loader(sequences: Sequence[Sequence[int]], batch_size: int, *, shuffle: bool = True, bucket: bool = True,
                seed: int = 0, pad_id: int = PAD_ID, pin_memory: bool = False,
                dataset: Any = None, collate_fn: Callable[[list], tuple] | None = None) -> DataLoader:
    """(x, y) batches from token sequences ``<bos> ... <eos>`` of any lengths: x = s[:-1], y = s[1:].

    Each batch is padded to its longest sequence: inputs with `pad_id`, targets with IGNORE_INDEX (the loss
    ignores them).  Lab 06 passes its own `dataset` (item i = the (x, y) pair of sequences[i]) and
    `collate_fn` (a list of items -> (X, Y)); the batches are still chosen by the lengths of `sequences`.
    `bucket` groups similar lengths (fewer pads); with `shuffle` and no `bucket` the batches are plain random
    ones (BucketBatchSampler with pools of one batch). The order depends only on (seed, epoch): call
    ``loader.batch_sampler.set_epoch(epoch)`` (`trainer.Trainer` does) so a resumed run sees the same batches.
    """
    seqs = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    if not seqs:
        raise ValueError("sequences is empty: nothing to batch")
    if any(len(s) < 2 for s in seqs):
        raise ValueError("every sequence needs >= 2 tokens (an input and a target); use encode_documents(...)")
    if shuffle or bucket:
        sampler = BucketBatchSampler([len(s) for s in seqs], batch_size, shuffle=shuffle, seed=seed,
                                     pool_factor=50 if bucket else 1)
    else:
        sampler = BatchSampler(SequentialSampler(seqs), batch_size, drop_last=False)
    # a private generator: creating the iterator must not consume the global torch RNG (keeps resumes exact)
    if dataset is not None and len(dataset) != len(seqs):
        raise ValueError(f"dataset has {len(dataset)} items but there are {len(seqs)} sequences; item i must be "
                         f"sequence i (one chunk per sequence)")
    return DataLoader(seqs if dataset is None else dataset, batch_sampler=sampler,
                      collate_fn=collate_fn or lm_collate_fn(pad_id=pad_id, ignore_index=IGNORE_INDEX),
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- generation


def complete(model: nn.Module, vocab: Vocab, prompt: str = "", max_new_tokens: int = 40, *,
             temperature: float = 1.0, seed: int | None = None, n: int = 1) -> list[str]:
    """`n` continuations of `prompt` (after <bos>), sampled with `labsupport.generate` until <eos> or the
    length limit; <unk>, <pad> and <bos> are masked out, so they are never emitted."""
    prompt_ids = [BOS_ID, *vocab.encode(prompt)]
    idx = torch.tensor([prompt_ids] * n)  # (n, T)
    out = generate(model, idx, max_new_tokens, temperature=temperature, seed=seed, eos_id=vocab.eos_id,
                   suppress_ids=SUPPRESS_IDS)  # (n, T + S)
    return [vocab.decode(row, skip_specials=True) for row in out]


__all__ = [
    "SUPPRESS_IDS", "LSTMLanguageModel", "clean_review", "complete", "lm_loss", "make_loader", "perplexity",
    "unigram_perplexity",
]
