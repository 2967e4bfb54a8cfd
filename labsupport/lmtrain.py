"""Small helpers for training a language model in a notebook and watching it learn (Lab 04 onwards).

    train_ds, val_ds = lm_datasets(vocab, train_text, val_text, seq_len=64)
    trainer = Trainer(train_config, model, train_ds, val_ds)
    sampler = SampleEveryEpoch(vocab, vocab.encode("The"), every=200).attach(trainer)
    trainer.run()                         # every 200 iterations: losses and a sample continuation
    plot_losses(trainer, floor=math.log(len(vocab)), floor_label="ln V")   # labsupport.viz.plot_losses
    evaluate_lm(model, val_ds)            # exact mean loss over the whole validation set

"Epoch" here means every `every` iterations: the Trainer draws random batches forever, it has no epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from labsupport.core import perplexity
from labsupport.evaluation import evaluate
from labsupport.generate import as_decode, generate
from labsupport.textdata import LanguageModelingDataset, Vocab
from labsupport.viz import moving_average, plot_losses  # re-exported: Lab 04 imports its helpers from here


def lm_datasets(vocab: Vocab, train_text: str, val_text: str, seq_len: int
                ) -> tuple[LanguageModelingDataset, LanguageModelingDataset]:
    """Encode both texts with `vocab` and cut them into (x, y) chunks of `seq_len` tokens (y = x shifted by one)."""
    return (LanguageModelingDataset(vocab.encode(train_text), seq_len),
            LanguageModelingDataset(vocab.encode(val_text), seq_len))


def evaluate_lm(model: nn.Module, dataset: Any, batch_size: int = 64, max_batches: int | None = None) -> float:
    """Mean next-token cross-entropy (nats per token) over `dataset`, read in order, dropout off.

    Unlike `Trainer.evaluate` (a few random batches, for the curve) this reads every item once (or the
    first `max_batches` batches), so it is the number to report. Each target token counts once:
    batches are weighted by their number of targets that are not IGNORE_INDEX.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset) if max_batches is None else min(len(dataset), max_batches * batch_size)
    if n == 0:
        raise ValueError("the dataset is empty: nothing to evaluate")
    return evaluate(model, DataLoader(dataset, batch_size=batch_size), max_batches=max_batches)["loss"]


class SampleEveryEpoch:
    """A Trainer callback: every `every` iterations print the losses and a sampled continuation of `prompt_ids`.

    Sampling uses its own seeded generator (`generate(..., seed=seed)`), so it never changes the training
    run: the losses are identical with or without this callback. The same seed at every call means the
    samples differ only because the model changed. Samples are kept in `self.samples` as (iter, text).
    """

    def __init__(self, tokenizer_or_decode: Any, prompt_ids: Sequence[int] | torch.Tensor, every: int,
                 max_new_tokens: int = 30, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                 suppress_ids: Sequence[int] | None = None, printer: Callable[[str], Any] = print):
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"every must be an integer >= 1 (iterations between samples), got {every!r}")
        self.prompt = torch.as_tensor(prompt_ids, dtype=torch.long).flatten()  # (T,)
        if self.prompt.numel() == 0:
            raise ValueError("prompt_ids is empty: give at least one token, e.g. vocab.encode('The')")
        self.decode = as_decode(tokenizer_or_decode)
        self.every, self.max_new_tokens = int(every), max_new_tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.suppress_ids = list(suppress_ids) if suppress_ids else None  # e.g. <unk>, <pad>: never sampled
        self.printer = printer
        self.samples: list[tuple[int, str]] = []

    def attach(self, trainer: Any) -> SampleEveryEpoch:
        """Register on the trainer's "on_batch_end" event; returns self."""
        trainer.add_callback("on_batch_end", self)
        return self

    def sample(self, model: nn.Module) -> str:
        """Prompt plus `max_new_tokens` sampled tokens, decoded."""
        ids = generate(model, self.prompt, self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                       seed=self.seed, suppress_ids=self.suppress_ids)  # (T + max_new_tokens,)
        return self.decode(ids.tolist())

    def __call__(self, trainer: Any) -> None:
        """Print and store a sample when trainer.iter_num is a multiple of `every` (iteration 0 included)."""
        it = trainer.iter_num
        if it % self.every:
            return
        text = self.sample(trainer.model)
        self.samples.append((it, text))
        recent = trainer.losses[-self.every:]
        train = f"{sum(recent) / len(recent):.3f}" if recent else "  -  "
        val = f"{trainer.eval_loss:.3f}" if trainer.eval_loss is not None else "  -  "
        self.printer(f"iter {it:5d} | train loss {train} | val loss {val} | {text!r}")


__all__ = ["SampleEveryEpoch", "evaluate_lm", "lm_datasets", "moving_average", "perplexity", "plot_losses"]
