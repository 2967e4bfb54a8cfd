"""Self-checks for Lab 07 (fine-tuning a GPT for classification). References live in `labsupport.classify`.

07.1 uses a tiny word-level 🤗 tokenizer built here (milliseconds, no files), so the check is the same in
every profile; the rules it checks (truncate, don't pad, pad to the batch's longest) are tokenizer-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from labsupport.check import Trace, exercise

WORDS = "a the film story is was great dull fine never not good bad at all , . ! it".split()
SENTENCES = ["a great film .", "dull", "the story is not good at all , not at all !", "it is fine", "bad"]


@lru_cache(maxsize=1)
def toy_tokenizer():
    """A word-level `PreTrainedTokenizerFast`: [PAD]=0, [UNK]=1, [EOS]=2, then WORDS."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]", *WORDS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def _ids(t: object) -> list:
    return t.tolist() if isinstance(t, (torch.Tensor, np.ndarray)) else [list(x) for x in t]


BATCH = {"idx": list(range(len(SENTENCES))), "sentence": list(SENTENCES), "label": [1, 0, 0, 1, 0]}


@exercise("07.1", title="tokenize, then pad each batch to its longest sequence",
          hint="tokenize_batch: tokenizer(batch['sentence'], truncation=True, max_length=max_length) with no padding; "
               "collate: pad input_ids with pad_token_id and attention_mask with 0 on the right, up to the longest "
               "in the batch; labels = tensor of the 'label' values",
          reference=["labsupport.classify:tokenize_batch", "labsupport.classify:pad_collate"],
          success="truncation, dynamic padding, attention masks and labels match the reference")
def drive_tokenize_and_collate(t: Trace, tokenize_batch: Callable, collate: Callable) -> None:
    tok = toy_tokenizer()
    for max_length in (64, 4):
        got = tokenize_batch({k: list(v) for k, v in BATCH.items()}, tok, max_length)
        for key in ("input_ids", "attention_mask"):
            if key not in got:
                raise AssertionError(f"tokenize_batch must return {key!r} (got keys {sorted(got)})")
            t.record(f"tokenize_batch(..., max_length={max_length})[{key!r}] (truncate to max_length; do not pad "
                     "here)", _ids(got[key]))
    enc = tok(list(SENTENCES), truncation=True, max_length=64)  # the features a dataset map would give
    features = [{"input_ids": i, "attention_mask": m, "label": y}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], BATCH["label"], strict=True)]
    for rows, pad_id in [(features[:3], tok.pad_token_id), (features[1:], 50256), (features[3:4], 7)]:
        got = collate([{k: list(v) if isinstance(v, list) else v for k, v in f.items()} for f in rows], pad_id)
        where = f"collate(<features of lengths {[len(r['input_ids']) for r in rows]}>, pad_token_id={pad_id})"
        for key in ("input_ids", "attention_mask", "labels"):
            if key not in got:
                raise AssertionError(f"collate must return {key!r} (got keys {sorted(got)}); the model reads 'labels'")
            t.record(f"{where}[{key!r}] (pad to the longest sequence in the batch)", torch.as_tensor(got[key]))


ACCURACY_CASES = [
    (torch.tensor([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0], [0.0, 1.0]]), torch.tensor([0, 1, 1, 0])),
    (torch.randn(9, 4, generator=torch.Generator().manual_seed(7)),
     torch.randint(4, (9,), generator=torch.Generator().manual_seed(8))),  # more rows than classes
    (torch.randn(3, 5, generator=torch.Generator().manual_seed(9)),
     torch.randint(5, (3,), generator=torch.Generator().manual_seed(10))),  # more classes than rows
]
ACCURACY_CASES += [(logits, logits.argmax(-1)) for logits, _ in ACCURACY_CASES[:1]]  # all right
ACCURACY_CASES += [(logits.numpy().astype(np.float32), labels.numpy()) for logits, labels in ACCURACY_CASES[:3]]


@exercise("07.2", title="accuracy from logits",
          hint="predictions = logits.argmax(axis=-1) (one per row); accuracy = mean(predictions == labels) as a float; "
               "accept numpy arrays (what the 🤗 Trainer passes) as well as tensors",
          reference=["labsupport.classify:accuracy"], options={"atol": 1e-6, "rtol": 0.0},
          success=f"{len(ACCURACY_CASES)} cases (tensors and numpy arrays) match")
def drive_accuracy(t: Trace, accuracy_from_logits: Callable) -> None:
    for logits, labels in ACCURACY_CASES:
        got = accuracy_from_logits(logits.copy() if isinstance(logits, np.ndarray) else logits.clone(),
                                   labels.copy() if isinstance(labels, np.ndarray) else labels.clone())
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise AssertionError(f"accuracy_from_logits must return a number, got {type(got).__name__}") from None
        t.record(f"accuracy_from_logits({type(logits).__name__} logits of shape {tuple(logits.shape)}, labels "
                 f"{labels.tolist()})", value)


P = 5
LAST_CASES = [
    ("right-padded", torch.tensor([[8, 9, 3, P, P], [4, P, P, P, P], [1, 2, 3, 4, 6]]), P),
    ("left-padded", torch.tensor([[P, P, 8, 9, 3], [P, P, P, P, 4], [1, 2, 3, 4, 6]]), P),
    ("unpadded", torch.tensor([[0, 0, 1], [2, 1, 0]]), 50256),  # token id 0 is a real token here
    ("pad id 0", torch.tensor([[3, 7, 0, 0], [9, 0, 0, 0]]), 0),
]


@exercise("07.3", title="index of the last real token",
          hint="real = input_ids != pad_id; the answer is the largest position where real is True, e.g. "
               "(torch.arange(T) * real).argmax(dim=1); counting real tokens only works for right padding",
          reference=["labsupport.classify:last_token_index"],
          success="right-, left- and unpadded batches give the right positions")
def drive_last_token_index(t: Trace, last_token_index: Callable) -> None:
    for name, ids, pad_id in LAST_CASES:
        got = last_token_index(ids.clone(), pad_id)
        t.record(f"{name} batch {ids.tolist()} (pad_id={pad_id})",
                 torch.as_tensor(got).long() if type(got) in (torch.Tensor, list, np.ndarray) else got)
