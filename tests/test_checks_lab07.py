"""Lab 07's self-checks pass the reference solutions and catch typical wrong answers."""

import numpy as np
import pytest
import torch

from labsupport import classify
from labsupport.check import run_check

# ---------------------------------------------------------------------------------------------- wrong answers


def tokenize_padded(batch, tokenizer, max_length):  # pads every row to max_length: no dynamic padding
    return dict(tokenizer(batch["sentence"], truncation=True, max_length=max_length, padding="max_length"))


def tokenize_untruncated(batch, tokenizer, max_length):
    return dict(tokenizer(batch["sentence"]))


def collate_pad_zero(features, pad_token_id):  # hard-codes pad id 0
    return classify.pad_collate(features, 0)


def collate_mask_all_ones(features, pad_token_id):
    out = classify.pad_collate(features, pad_token_id)
    out["attention_mask"] = torch.ones_like(out["attention_mask"])
    return out


def collate_label_key(features, pad_token_id):  # the model's forward takes `labels`, not `label`
    out = classify.pad_collate(features, pad_token_id)
    out["label"] = out.pop("labels")
    return out


def collate_left(features, pad_token_id):
    return classify.pad_collate(features, pad_token_id, padding_side="left")


def collate_fixed_length(features, pad_token_id):  # pads to a fixed 64, not to the batch's longest
    return classify.pad_collate([*features, {"input_ids": [pad_token_id] * 64, "label": 0}], pad_token_id)


def accuracy_axis0(logits, labels):
    return float((np.asarray(logits).argmax(axis=0)[: len(labels)] == np.asarray(labels)).mean())


def accuracy_count(logits, labels):  # number right, not the share
    return float((np.asarray(logits).argmax(-1) == np.asarray(labels)).sum())


def accuracy_binary_threshold(logits, labels):  # only right for two classes
    return float(((np.asarray(logits)[:, 1] > 0).astype(int) == np.asarray(labels)).mean())


def accuracy_torch_only(logits, labels):  # breaks on the numpy arrays the HF Trainer passes
    return (logits.argmax(dim=-1) == labels).float().mean().item()


def last_by_count(ids, pad_id):  # right padding only
    return (ids != pad_id).sum(dim=1) - 1


def last_first_pad_minus_one(ids, pad_id):  # old 🤗 rule: unpadded rows give -1, left padding breaks
    return (ids == pad_id).int().argmax(dim=1) - 1


def last_position(ids, pad_id):  # the original assignment's bug: a pad for short rows
    return torch.full((ids.size(0),), ids.size(1) - 1)


def last_pad_zero(ids, pad_id):
    return classify.last_token_index(ids, 0) if (ids != 0).any(dim=1).all() else torch.zeros(ids.size(0))


# ---------------------------------------------------------------------------------------------- tests


def test_references_pass():
    assert run_check("07.3", classify.tokenize_batch, classify.pad_collate)[0]
    assert run_check("07.4", classify.accuracy)[0]
    assert run_check("07.1", classify.last_token_index)[0]


@pytest.mark.parametrize("tok", [tokenize_padded, tokenize_untruncated])
def test_07_1_catches_wrong_tokenization(tok):
    ok, msg = run_check("07.3", tok, classify.pad_collate)
    assert not ok and "tokenize_batch" in msg


@pytest.mark.parametrize("collate", [collate_pad_zero, collate_mask_all_ones, collate_label_key, collate_left,
                                     collate_fixed_length])
def test_07_1_catches_wrong_collation(collate):
    ok, msg = run_check("07.3", classify.tokenize_batch, collate)
    assert not ok and "collate" in msg


@pytest.mark.parametrize("fn", [accuracy_axis0, accuracy_count, accuracy_binary_threshold, accuracy_torch_only])
def test_07_2_catches_wrong_accuracy(fn):
    assert not run_check("07.4", fn)[0]


@pytest.mark.parametrize("fn", [last_by_count, last_first_pad_minus_one, last_position, last_pad_zero])
def test_07_3_catches_wrong_last_token_index(fn):
    assert not run_check("07.1", fn)[0]


def test_unfinished_exercise_reports_not_implemented():
    def todo(*args):
        raise NotImplementedError

    ok, msg = run_check("07.1", todo)
    assert not ok and "not implemented" in msg


# ---------------------------------------------------------------------------------------------- 07.2


class HeadOk(classify.ClassifierLayers):
    def forward(self, idx, targets=None):
        h = self.gpt.forward_hidden(idx)
        last = classify.last_token_index(idx, self.pad_id)
        logits = self.classifier(h[torch.arange(idx.size(0)), last])
        return logits, None if targets is None else torch.nn.functional.cross_entropy(logits, targets)


class HeadLastPosition(HeadOk):  # the original assignment's bug
    def forward(self, idx, targets=None):
        logits = self.classifier(self.gpt.forward_hidden(idx)[:, -1])
        return logits, None if targets is None else torch.nn.functional.cross_entropy(logits, targets)


class HeadFirstToken(HeadOk):
    def forward(self, idx, targets=None):
        logits = self.classifier(self.gpt.forward_hidden(idx)[:, 0])
        return logits, None if targets is None else torch.nn.functional.cross_entropy(logits, targets)


class HeadMeanPool(HeadOk):  # averages over pads too: padding changes the answer
    def forward(self, idx, targets=None):
        logits = self.classifier(self.gpt.forward_hidden(idx).mean(dim=1))
        return logits, None if targets is None else torch.nn.functional.cross_entropy(logits, targets)


class HeadSoftmax(HeadOk):  # returns probabilities instead of logits
    def forward(self, idx, targets=None):
        logits, loss = HeadOk.forward(self, idx, targets)
        return logits.softmax(-1), loss


def test_07_2_reference_passes():
    for cls in (HeadOk, classify.GPTClassifier):
        ok, msg = run_check("07.2", cls)
        assert ok, msg


@pytest.mark.parametrize("cls,needle", [(HeadLastPosition, "last position"), (HeadFirstToken, "logits"),
                                        (HeadMeanPool, "logits"), (HeadSoftmax, "logits")])
def test_07_2_wrong(cls, needle):
    ok, msg = run_check("07.2", cls)
    assert not ok and needle in msg, msg
