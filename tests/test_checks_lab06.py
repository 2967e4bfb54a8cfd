"""Every Lab 06 self-check passes with the reference solution and fails with typical wrong answers."""


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from labsupport import lstm
from labsupport.check import run_check
from labsupport.textdata import IGNORE_INDEX, PAD_ID

# ---------------------------------------------------------------------------------------------- 06.1


class Chunks(Dataset):
    """The notebook's dataset: __init__ as given there, __getitem__ as the solution (or a mistake)."""

    mistake = None

    def __init__(self, sequences, seq_len):
        self.sequences = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
        self.seq_len = seq_len
        self.chunks = [(i, start) for i, s in enumerate(self.sequences) for start in range(0, len(s) - 1, seq_len)]

    def __len__(self):
        return len(self.chunks)

    def __getitem__(self, i):
        s, start = self.chunks[i]
        end = start + self.seq_len + (0 if self.mistake == "short" else 1)
        chunk = self.sequences[s][start:end]
        if self.mistake == "same":
            return chunk[:-1], chunk[:-1]
        if self.mistake == "swapped":
            return chunk[1:], chunk[:-1]
        return chunk[:-1], chunk[1:]


def collate_ok(batch, pad_id=PAD_ID):
    T = max(len(x) for x, _ in batch)
    X = torch.full((len(batch), T), pad_id, dtype=torch.long)
    Y = torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long)
    for b, (x, y) in enumerate(batch):
        X[b, : len(x)], Y[b, : len(y)] = x, y
    return X, Y


def collate_pads_targets_with_pad(batch, pad_id=PAD_ID):
    X, Y = collate_ok(batch, pad_id)
    return X, Y.masked_fill(Y == IGNORE_INDEX, pad_id)


def collate_left(batch, pad_id=PAD_ID):
    T = max(len(x) for x, _ in batch)
    X = torch.full((len(batch), T), pad_id, dtype=torch.long)
    Y = torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long)
    for b, (x, y) in enumerate(batch):
        X[b, T - len(x):], Y[b, T - len(y):] = x, y
    return X, Y


def collate_pad_zero(batch, pad_id=PAD_ID):
    return collate_ok(batch, 0)


def test_06_1_reference_passes():
    ok, msg = run_check("06.1", Chunks, collate_ok)
    assert ok, msg


@pytest.mark.parametrize("mistake", ["short", "same", "swapped"])
def test_06_1_wrong_dataset(mistake):
    ok, msg = run_check("06.1", type("Wrong", (Chunks,), {"mistake": mistake}), collate_ok)
    assert not ok and "dataset[" in msg, msg


@pytest.mark.parametrize("wrong", [collate_pads_targets_with_pad, collate_left, collate_pad_zero])
def test_06_1_wrong_collate(wrong):
    ok, msg = run_check("06.1", Chunks, wrong)
    assert not ok and "lm_collate_fn" in msg, msg


# ---------------------------------------------------------------------------------------------- 06.2


class LSTMOk(nn.Module):
    def __init__(self, config, batch_first=True, padding=True, bias=True):
        super().__init__()
        self.pad_id = config.pad_id
        pad = config.pad_id if padding else None
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=pad)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden_size, batch_first=batch_first)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=bias)

    def forward(self, idx, targets=None):
        h, _ = self.lstm(self.embedding(idx))
        logits = self.head(h)
        return logits, None if targets is None else lstm.lm_loss(logits, targets, self.pad_id)


def _lstm_variant(**kw):
    return type("V", (LSTMOk,), {"__init__": lambda self, config: LSTMOk.__init__(self, config, **kw)})


def test_06_2_reference_and_library_pass():
    for cls in (LSTMOk, lstm.LSTMLanguageModel):
        ok, msg = run_check("06.2", cls)
        assert ok, msg


@pytest.mark.parametrize("kw,needle", [
    (dict(batch_first=False), "logits"), (dict(padding=False), "padding_idx"), (dict(bias=False), "parameter names"),
])
def test_06_2_wrong_model(kw, needle):
    ok, msg = run_check("06.2", _lstm_variant(**kw))
    assert not ok and needle in msg, msg


def test_06_2_loss_counting_pads_fails():
    class CountsPads(LSTMOk):
        def forward(self, idx, targets=None):
            logits, _ = LSTMOk.forward(self, idx)
            if targets is None:
                return logits, None
            return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten().clamp_min(0))

    ok, msg = run_check("06.2", CountsPads)
    assert not ok and "loss" in msg


def test_06_2_model_that_does_not_learn_fails():
    class Frozen(LSTMOk):  # ignores the context: predicts from the current word only through a frozen head
        def forward(self, idx, targets=None):
            logits = self.head(torch.zeros(*idx.shape, self.head.in_features)) + 0 * self.embedding(idx).sum()
            return logits, None if targets is None else lstm.lm_loss(logits, targets, self.pad_id)

    ok, msg = run_check("06.2", Frozen)
    assert not ok


# ---------------------------------------------------------------------------------------------- 06.3


def loss_ok(logits, targets, pad_id):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=pad_id)


def loss_manual_mask(logits, targets, pad_id):
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    mask = (targets.flatten() != pad_id).float()
    return (nll * mask).sum() / mask.sum()


def loss_counts_pads(logits, targets, pad_id):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def loss_pad_id_1(logits, targets, pad_id):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=1)  # hard-coded pad id


def loss_mask_built_not_used(logits, targets, pad_id):
    mask = targets != pad_id  # the original notebook's bug
    del mask
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def loss_mean_over_all(logits, targets, pad_id):
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * (targets.flatten() != pad_id)).mean()  # divides by every position


def loss_detached(logits, targets, pad_id):
    return torch.tensor(loss_ok(logits, targets, pad_id).item())


def loss_sum(logits, targets, pad_id):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id, reduction="sum")


def test_06_2_reference_and_manual_mask_pass():
    assert run_check("06.3", loss_ok)[0]
    assert run_check("06.3", loss_manual_mask)[0]


@pytest.mark.parametrize("wrong", [loss_counts_pads, loss_pad_id_1, loss_mask_built_not_used, loss_mean_over_all,
                                   loss_detached, loss_sum])
def test_06_2_wrong(wrong):
    ok, msg = run_check("06.3", wrong)
    assert not ok and msg


def test_06_2_message_names_the_pad_bug():
    ok, msg = run_check("06.3", loss_counts_pads)
    assert not ok and "counts the pad positions" in msg


@pytest.mark.parametrize("id", ["06.3"])
def test_not_implemented_is_reported(id):
    def todo(*args, **kwargs):
        raise NotImplementedError

    ok, msg = run_check(id, todo)
    assert not ok and "not implemented" in msg


def test_unfinished_classes_are_reported():
    class TodoDataset(Chunks):
        def __getitem__(self, i):
            raise NotImplementedError

    class TodoModel(nn.Module):
        def __init__(self, config):
            super().__init__()
            raise NotImplementedError

    assert "not implemented" in run_check("06.1", TodoDataset, collate_ok)[1]
    assert "not implemented" in run_check("06.2", TodoModel)[1]
