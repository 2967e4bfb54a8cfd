"""A GPT as a sequence classifier (Lab 07), and the small helpers of the 🤗 Trainer fine-tune.

Part A, the lab GPT:

    clf = GPTClassifier(gpt, n_classification_class=2)     # gpt: a (pretrained) labsupport.gpt.GPT
    clf.set_trainable("head")                              # or "all" / "last_block"
    train_ds = ClassificationDataset(texts, labels, vocab, max_len=64)   # yields (x (T,), y ())
    trainer, history = finetune(clf, train_ds, val_ds, train_config, eval_interval=50)

A causal model's hidden state at position t has read tokens 0..t, so the state of the LAST REAL token
summarises the whole sequence. Batches are right-padded; the pad positions come after it and (attention
being causal) never change it, so padding a sequence never changes its logits.

Part B, 🤗 Transformers: `tokenize_batch` (for `Dataset.map`), `pad_collate` (what `DataCollatorWithPadding`
does), `accuracy` / `compute_metrics` (for `transformers.Trainer`) and `precision_kwargs` (bf16/fp16/fp32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from labsupport.config import CfgNode
from labsupport.core import count_parameters
from labsupport.evaluation import evaluate
from labsupport.precision import amp, fp32_logits
from labsupport.textdata import PAD_ID, UNK_ID, Vocab, encode_documents
from labsupport.trainer import Trainer

TRAINABLE_MODES = ("all", "head", "last_block")


def last_token_index(idx: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Position of the last non-pad token of each row: idx (B, T) -> (B,) LongTensor.

    Works for right padding ([a b c <pad> <pad>] -> 2), left padding ([<pad> <pad> a b c] -> 4) and no
    padding (-> T - 1). Same rule as 🤗's *ForSequenceClassification: the rightmost position != pad_id.
    """
    if idx.dim() != 2:
        raise ValueError(f"idx must be a (B, T) batch of token ids, got shape {tuple(idx.shape)}")
    real = idx != pad_id  # (B, T)
    if not real.any(dim=1).all():
        raise ValueError(f"a sequence consists only of padding (pad_id={pad_id}); it has no last token")
    positions = torch.arange(idx.size(1), device=idx.device)  # (T,)
    return (positions * real).argmax(dim=1)  # the largest position holding a real token


class ClassifierLayers(nn.Module):
    """A GPT (`self.gpt`, LM head included) with a classification head beside it (`self.classifier`), and
    `set_trainable`; `GPTClassifier` adds the forward pass (Lab 07 subclasses this and writes its own)."""

    def __init__(self, gpt: nn.Module, n_classification_class: int, pad_id: int = PAD_ID):
        super().__init__()
        if not isinstance(n_classification_class, int) or n_classification_class < 2:
            raise ValueError(f"n_classification_class must be an integer >= 2, got {n_classification_class!r}")
        self.gpt = gpt
        self.pad_id = pad_id
        self.n_classification_class = n_classification_class
        self.classifier = nn.Linear(gpt.config.n_embd, n_classification_class)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.02)  # GPT-2's init, like the LM head
        nn.init.zeros_(self.classifier.bias)

    def set_trainable(self, mode: str) -> list[str]:
        """Choose what fine-tuning updates; returns the names of the trainable parameters.

        "all": the transformer and the head; "head": only the classification head (the GPT is a frozen
        feature extractor); "last_block": the head, the last transformer block and the final LayerNorm.
        The LM head is always frozen: the classifier never uses it, so it would get no gradient anyway.
        """
        if mode not in TRAINABLE_MODES:
            raise ValueError(f"mode must be one of {TRAINABLE_MODES}, got {mode!r}")
        prefixes = {"all": ("gpt.transformer.", "classifier."), "head": ("classifier.",),
                    "last_block": (f"gpt.transformer.h.{len(self.gpt.transformer.h) - 1}.", "gpt.transformer.ln_f.",
                                   "classifier.")}[mode]
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith(prefixes))
        return [name for name, p in self.named_parameters() if p.requires_grad]


class GPTClassifier(ClassifierLayers):
    """A GPT with a classification head beside its LM head, reading the last real token's hidden state.

    forward(idx (B, T), targets (B,) or None, lengths (B,) or None) -> (logits (B, n_classes), loss or None),
    so `labsupport.trainer.Trainer` (which calls `model(x, y)`) trains it. Without `lengths` the last real
    token is found from `pad_id`. Inputs must be RIGHT-padded: the lab GPT has no attention mask and learned
    absolute positions, so left padding would shift positions and let real tokens attend to pads.
    """

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.gpt.forward_hidden(idx)  # (B, T, C)
        last = last_token_index(idx, self.pad_id) if lengths is None else lengths.to(idx.device).long() - 1
        pooled = h[torch.arange(idx.size(0), device=idx.device), last]  # (B, C)
        logits = fp32_logits(self.classifier, pooled)  # (B, n_classes), float32 under autocast
        loss = None
        if targets is not None:
            if targets.shape != (idx.size(0),):
                raise ValueError(f"targets must be (B,) = ({idx.size(0)},) class ids, got {tuple(targets.shape)}")
            loss = F.cross_entropy(logits, targets)
        return logits, loss


# ---------------------------------------------------------------------------------------------- Part A data


class ClassificationDataset(Dataset):
    """Texts encoded with a word vocabulary, right-padded to `max_len`; item i is (x (max_len,), y ()).

    Texts longer than `max_len` tokens keep their first `max_len` tokens; an empty text becomes one <unk>
    (a sequence needs at least one real token to have a last one).
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], vocab: Vocab, max_len: int):
        texts, labels = list(texts), [int(y) for y in labels]
        if len(texts) != len(labels):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; they must pair up")
        if not texts:
            raise ValueError("no texts: the dataset would be empty")
        ids = encode_documents(texts, vocab, max_len, add_bos_eos=False, pad_to=max_len)
        self.x = torch.tensor(ids, dtype=torch.long)  # (N, max_len)
        self.x[self.x[:, 0] == PAD_ID, 0] = UNK_ID  # empty texts
        self.y = torch.tensor(labels, dtype=torch.long)  # (N,)
        self.lengths = (self.x != PAD_ID).sum(dim=1)  # (N,) real tokens per text

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def _scores(model: nn.Module, dataset: Dataset) -> dict[str, float]:
    """labsupport.evaluation.evaluate over a whole dataset: mean loss and accuracy (each example counts once)."""
    return evaluate(model, DataLoader(dataset, batch_size=256))


def finetune(model: GPTClassifier, train_dataset: Dataset, val_dataset: Dataset, train_config: CfgNode,
             eval_interval: int, n_train_eval: int | None = None):
    """Train with `labsupport.trainer.Trainer`; every `eval_interval` steps measure loss and accuracy on the
    validation set and on a fixed training subset (dropout off, so the two are comparable).

    Returns (trainer, history) with history a pandas DataFrame: iter, train_loss, train_acc, val_loss, val_acc.
    """
    import pandas as pd  # heavy (~1 s): only the lab's fine-tune needs it

    if not isinstance(eval_interval, int) or eval_interval < 1:
        raise ValueError(f"eval_interval must be an integer >= 1, got {eval_interval!r}")
    n_train_eval = min(n_train_eval or len(val_dataset), len(train_dataset))
    train_probe = Subset(train_dataset, torch.randperm(len(train_dataset), generator=torch.Generator().manual_seed(0))
                         [:n_train_eval].tolist())
    rows = []

    def log(tr: Trainer) -> None:
        if tr.iter_num % eval_interval == 0 or tr.iter_num == tr.config.max_iters:
            t, v = _scores(tr.model, train_probe), _scores(tr.model, val_dataset)
            rows.append(dict(iter=tr.iter_num, train_loss=t["loss"], train_acc=t["accuracy"],
                             val_loss=v["loss"], val_acc=v["accuracy"]))

    trainer = Trainer(train_config, model, train_dataset)
    t, v = _scores(model.to(trainer.device), train_probe), _scores(model, val_dataset)
    rows.append(dict(iter=0, train_loss=t["loss"], train_acc=t["accuracy"], val_loss=v["loss"], val_acc=v["accuracy"]))
    trainer.add_callback("on_batch_end", log)
    trainer.run()
    return trainer, pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- Part B helpers


def tokenize_batch(batch: Mapping[str, Any], tokenizer: Any, max_length: int,
                   text_column: str = "sentence") -> dict[str, list]:
    """For `dataset.map(..., batched=True)`: token ids and attention masks, truncated to `max_length`, NOT
    padded (the collator pads each batch to its own longest sequence: dynamic padding)."""
    return dict(tokenizer(list(batch[text_column]), truncation=True, max_length=max_length))


def pad_collate(features: Sequence[Mapping[str, Any]], pad_token_id: int,
                padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad tokenized examples to the longest one (what `DataCollatorWithPadding` does).

    features: dicts with "input_ids" (and optionally "attention_mask", "label"/"labels").
    Returns input_ids and attention_mask (B, T) and labels (B,) when present, as int64 tensors.
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if not features:
        raise ValueError("cannot collate an empty batch")
    T = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), T), pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(features), T), dtype=torch.long)  # (B, T)
    for b, f in enumerate(features):
        n = len(f["input_ids"])
        cols = slice(0, n) if padding_side == "right" else slice(T - n, T)
        ids[b, cols] = torch.as_tensor(f["input_ids"], dtype=torch.long)
        mask[b, cols] = torch.as_tensor(f.get("attention_mask", [1] * n), dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask}
    key = "label" if "label" in features[0] else "labels" if "labels" in features[0] else None
    if key is not None:
        out["labels"] = torch.tensor([int(f[key]) for f in features], dtype=torch.long)
    return out


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A tensor (bf16 included: numpy has no bf16) or array-like -> numpy array."""
    if torch.is_tensor(x):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def accuracy(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Share of rows whose largest logit is at the true label: logits (N, C), labels (N,) -> float."""
    logits, labels = _numpy(logits), _numpy(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need logits (N, C) and labels (N,), got {logits.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((logits.argmax(axis=-1) == labels).mean())


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """`transformers.Trainer`'s compute_metrics: EvalPrediction (logits, label ids) -> {"accuracy": ...}."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, (tuple, list)):  # some models also return extra outputs; logits come first
        logits = logits[0]
    return {"accuracy": accuracy(logits, labels)}


def precision_kwargs(device: torch.device | str, model: nn.Module | None = None) -> dict[str, bool]:
    """TrainingArguments mixed-precision flags from the project's policy (`labsupport.precision.amp`): bf16 on
    capability >= 8.0, fp16 (the HF Trainer adds the GradScaler) below, e.g. a Colab T4; fp32 on CPU/MPS."""
    return amp(device, training=True, model=model).trainer_kwargs()


__all__ = [
    "TRAINABLE_MODES", "ClassificationDataset", "ClassifierLayers", "GPTClassifier", "accuracy", "compute_metrics",
    "count_parameters", "finetune", "last_token_index", "pad_collate", "precision_kwargs", "tokenize_batch",
]
