"""Self-checks for Lab 07 (fine-tuning a GPT for classification). References live in `labsupport.classify`.

07.1 uses a tiny word-level 🤗 tokenizer built here (milliseconds, no files), so the check is the same in
every profile; the rules it checks (truncate, don't pad, pad to the batch's longest) are tokenizer-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from labsupport import classify
from labsupport.check import exercise

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


@exercise("07.1", title="tokenize, then pad each batch to its longest sequence",
          hint="tokenize_batch: tokenizer(batch['sentence'], truncation=True, max_length=max_length) with no padding; "
               "collate: pad input_ids with pad_token_id and attention_mask with 0 on the right, up to the longest "
               "in the batch; labels = tensor of the 'label' values")
def check_tokenize_and_collate(tokenize_batch: Callable, collate: Callable) -> str:
    tok = toy_tokenizer()
    batch = {"idx": list(range(len(SENTENCES))), "sentence": list(SENTENCES), "label": [1, 0, 0, 1, 0]}
    for max_length in (64, 4):
        got = tokenize_batch(dict(batch), tok, max_length)
        want = classify.tokenize_batch(batch, tok, max_length)
        for key in ("input_ids", "attention_mask"):
            if key not in got:
                raise AssertionError(f"tokenize_batch must return {key!r} (got keys {sorted(got)})")
            rows = _ids(got[key])
            if len(rows) != len(SENTENCES):
                raise AssertionError(f"tokenize_batch(...)[{key!r}] has {len(rows)} rows, one per sentence expected")
            for sentence, row, ref in zip(SENTENCES, rows, want[key]):
                if row != ref:
                    raise AssertionError(f"tokenize_batch(..., max_length={max_length})[{key!r}] for {sentence!r}: "
                                         f"expected {ref}, got {row} (truncate to max_length; do not pad here)")
    enc = classify.tokenize_batch(batch, tok, 64)
    features = [{"input_ids": i, "attention_mask": m, "label": y}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], batch["label"])]
    for rows, pad_id in [(features[:3], tok.pad_token_id), (features[1:], 50256), (features[3:4], 7)]:
        got = collate([dict(f) for f in rows], pad_id)
        want = classify.pad_collate(rows, pad_id)
        where = f"collate(<features of lengths {[len(r['input_ids']) for r in rows]}>, pad_token_id={pad_id})"
        for key, value in want.items():
            if key not in got:
                raise AssertionError(f"collate must return {key!r} (got keys {sorted(got)}); the model reads 'labels'")
            g = torch.as_tensor(got[key])
            if g.shape != value.shape:
                raise AssertionError(f"{where}[{key!r}] has shape {tuple(g.shape)}, expected {tuple(value.shape)} "
                                     "(pad to the longest sequence in the batch)")
            if not torch.equal(g.long(), value):
                raise AssertionError(f"{where}[{key!r}]: expected {value.tolist()}, got {g.tolist()}")
    return "truncation, dynamic padding, attention masks and labels match the reference"


@exercise("07.2", title="accuracy from logits",
          hint="predictions = logits.argmax(axis=-1) (one per row); accuracy = mean(predictions == labels) as a float; "
               "accept numpy arrays (what the 🤗 Trainer passes) as well as tensors")
def check_accuracy(accuracy_from_logits: Callable) -> str:
    g = torch.Generator().manual_seed(7)
    cases = [
        (torch.tensor([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0], [0.0, 1.0]]), torch.tensor([0, 1, 1, 0])),
        (torch.randn(9, 4, generator=g), torch.randint(4, (9,), generator=g)),  # more rows than classes
        (torch.randn(3, 5, generator=g), torch.randint(5, (3,), generator=g)),  # more classes than rows
    ]
    cases += [(logits, logits.argmax(-1)) for logits, _ in cases[:1]]  # all right
    cases += [(logits.numpy().astype(np.float32), labels.numpy()) for logits, labels in cases[:3]]
    for logits, labels in cases:
        want = classify.accuracy(logits, labels)
        got = accuracy_from_logits(logits, labels)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise AssertionError(f"accuracy_from_logits must return a number, got {type(got).__name__}") from None
        if abs(value - want) > 1e-6:
            kind = type(logits).__name__
            raise AssertionError(f"accuracy_from_logits({kind} logits of shape {tuple(logits.shape)}, labels "
                                 f"{labels.tolist()}): expected {want:.4f}, got {value:.4f}")
    return f"{len(cases)} cases (tensors and numpy arrays) match"


@exercise("07.3", title="index of the last real token",
          hint="real = input_ids != pad_id; the answer is the largest position where real is True, e.g. "
               "(torch.arange(T) * real).argmax(dim=1); counting real tokens only works for right padding")
def check_last_token_index(last_token_index: Callable) -> str:
    P = 5
    cases = [
        ("right-padded", torch.tensor([[8, 9, 3, P, P], [4, P, P, P, P], [1, 2, 3, 4, 6]]), P),
        ("left-padded", torch.tensor([[P, P, 8, 9, 3], [P, P, P, P, 4], [1, 2, 3, 4, 6]]), P),
        ("unpadded", torch.tensor([[0, 0, 1], [2, 1, 0]]), 50256),  # token id 0 is a real token here
        ("pad id 0", torch.tensor([[3, 7, 0, 0], [9, 0, 0, 0]]), 0),
    ]
    for name, ids, pad_id in cases:
        want = classify.last_token_index(ids, pad_id)
        got = torch.as_tensor(last_token_index(ids.clone(), pad_id))
        if got.tolist() != want.tolist():
            raise AssertionError(f"{name} batch {ids.tolist()} (pad_id={pad_id}): expected {want.tolist()}, "
                                 f"got {got.tolist()}")
    return "right-, left- and unpadded batches give the right positions"
