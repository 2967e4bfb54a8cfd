"""Self-checks for Lab 07 (fine-tuning a GPT for classification). References live in `labsupport.classify`.

07.1: the last real token of right-, left- and unpadded batches. 07.2: the student's `GPTClassifier.forward`
gets the reference weights and must give the reference logits and loss, the same logits for a sentence however
it is padded, and read the last real token (not the last position). 07.3 uses a tiny word-level 🤗 tokenizer
built here (milliseconds, no files), so the check is the same in every profile; the rules it checks (truncate,
don't pad, pad to the batch's longest) are tokenizer-agnostic. 07.4: accuracy on tensors and numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from labsupport import classify
from labsupport.check import Records, Trace, WrongAnswer, compare, exercise
from labsupport.checks.lab04 import tiny_gpt  # at import: the sandbox hides check modules once drivers are loaded

WORDS = "a the film story is was great dull fine never not good bad at all , . ! it".split()
SENTENCES = ["a great film .", "dull", "the story is not good at all , not at all !", "it is fine", "bad"]


@lru_cache(maxsize=1)
def toy_tokenizer():
    """A word-level `PreTrainedTokenizerFast`: [PAD]=0, [UNK]=1, [EOS]=2, then WORDS."""
    # heavy (~3 s with transformers): only Lab 07's checks that tokenize need them
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


@exercise("07.3", title="tokenize, then pad each batch to its longest sequence",
          hint="tokenizing cuts long sentences but pads nothing; the collate function pads each batch on the right, "
               "only up to its longest sentence: ids with the pad id, the mask with 0 (pads are not real tokens)",
          hint2="the tokenizer's truncation and max_length arguments; in collate torch.full / torch.zeros of shape "
                "(B, longest) and the key 'labels' (what the 🤗 model's forward takes)",
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


@exercise("07.4", title="accuracy from logits",
          hint="a row's prediction is its class with the largest logit; accuracy is the share of rows whose "
               "prediction equals the label; the 🤗 Trainer passes numpy arrays, your own code may pass tensors",
          hint2="np.asarray(...) accepts both; argmax over the last axis; return a Python float",
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


@exercise("07.1", title="index of the last real token",
          hint="for each row, the largest position holding a real (non-pad) token; counting the real tokens only "
               "works for right padding, and a row may be padded on the left or not at all",
          hint2="a boolean mask input_ids != pad_id, positions from torch.arange, and an argmax over dim 1",
          reference=["labsupport.classify:last_token_index"],
          success="right-, left- and unpadded batches give the right positions")
def drive_last_token_index(t: Trace, last_token_index: Callable) -> None:
    for name, ids, pad_id in LAST_CASES:
        got = last_token_index(ids.clone(), pad_id)
        t.record(f"{name} batch {ids.tolist()} (pad_id={pad_id})",
                 torch.as_tensor(got).long() if type(got) in (torch.Tensor, list, np.ndarray) else got)


CLF_PAD = 1
CLF_IDS = torch.tensor([[4, 5, 6, 7, CLF_PAD, CLF_PAD, CLF_PAD], [8, 9, CLF_PAD, CLF_PAD, CLF_PAD, CLF_PAD, CLF_PAD],
                        [2, 3, 4, 5, 6, 7, 8]])  # right-padded
CLF_TARGETS = torch.tensor([0, 2, 1])
CLF_SENTENCE = torch.tensor([[4, 9, 2, 6]])


def _classifier(cls: type) -> torch.nn.Module:
    """cls(a tiny lab GPT, 3 classes, pad_id 1) with a seeded head that has an opinion, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        clf = cls(tiny_gpt(seed=11, block_size=10, vocab_size=12), 3, pad_id=CLF_PAD).eval()
    head = getattr(clf, "classifier", None)
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            head.weight.copy_(0.5 * torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(13)))
    return clf


def _judge_classifier(got: Records, want: Records, **options: object) -> str:
    label = "forward(idx) logits on a right-padded batch"
    g, w, last = got.get(label), want[label], got.get("the head applied at the last position instead")
    if isinstance(g, torch.Tensor) and isinstance(last, torch.Tensor) and g.shape == last.shape == w.shape \
            and torch.allclose(g, last, atol=1e-5) and not torch.allclose(w, last, atol=1e-5):
        raise WrongAnswer("you classify the state at the last position, which is a pad for short rows: read each "
                          "row's last real token instead")
    compare(got, want, rtol=1e-5, atol=1e-5)
    return "reference logits and loss; the last real token, not the last position; padding never changes the logits"


@exercise("07.2", title="the classifier head on the GPT",
          hint="run the transformer to get one hidden state per position, keep for each row the state at its last "
               "real token (your 07.1), map it to class scores with the classification head; the loss is the "
               "cross-entropy of those scores against the labels",
          hint2="self.gpt.forward_hidden(idx) is (B, T, C); index it with (torch.arange(B), last); self.classifier; "
                "F.cross_entropy(logits, targets)",
          reference=["labsupport.classify:GPTClassifier"], judge=_judge_classifier)
def drive_classifier(t: Trace, GPTClassifier: type) -> None:
    if not isinstance(GPTClassifier, type) or not issubclass(GPTClassifier, classify.ClassifierLayers):
        raise WrongAnswer("pass your class (labsupport.check('07.2', GPTClassifier)); it subclasses "
                          "labsupport.classify.ClassifierLayers")
    clf = _classifier(GPTClassifier)
    with torch.no_grad():
        out = clf(CLF_IDS.clone())
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise WrongAnswer("forward(idx) must return a pair (logits, None)")
        t.record("forward(idx) logits on a right-padded batch", out[0])
        t.record("forward(idx) without targets returns loss None", out[1] is None)
        t.record("the head applied at the last position instead",
                 clf.classifier(clf.gpt.forward_hidden(CLF_IDS.clone())[:, -1]))
        for n in (0, 3, 6):
            padded = torch.cat([CLF_SENTENCE, torch.full((1, n), CLF_PAD)], 1)
            t.record(f"logits of one sentence of 4 tokens padded to length {4 + n} (must not change)",
                     clf(padded)[0])
        out = clf(CLF_IDS.clone(), CLF_TARGETS.clone())
        t.record("forward(idx, targets) loss: cross-entropy of the logits against the labels",
                 out[1] if isinstance(out, tuple | list) and len(out) == 2 else out)
