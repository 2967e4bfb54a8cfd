"""Every Lab 06 self-check passes with the reference solution and fails with typical wrong answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from labsupport.check import run_check

# ---------------------------------------------------------------------------------------------- 06.1


def shift_ok(batch):
    return batch[:, :-1], batch[:, 1:]


def shift_swapped(batch):
    return batch[:, 1:], batch[:, :-1]


def shift_same(batch):
    return batch, batch


def shift_1d(batch):
    return batch[0, :-1], batch[0, 1:]


def shift_in_place(batch):
    batch[:, 0] = 0
    return batch[:, :-1], batch[:, 1:]


def shift_lists(batch):
    return batch[:, :-1].tolist(), batch[:, 1:].tolist()


@pytest.mark.parametrize("wrong", [shift_swapped, shift_same, shift_1d, shift_in_place, shift_lists])
def test_06_1(wrong):
    assert run_check("06.1", shift_ok)[0]
    ok, msg = run_check("06.1", wrong)
    assert not ok and msg


# ---------------------------------------------------------------------------------------------- 06.2


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
    assert run_check("06.2", loss_ok)[0]
    assert run_check("06.2", loss_manual_mask)[0]


@pytest.mark.parametrize("wrong", [loss_counts_pads, loss_pad_id_1, loss_mask_built_not_used, loss_mean_over_all,
                                   loss_detached, loss_sum])
def test_06_2_wrong(wrong):
    ok, msg = run_check("06.2", wrong)
    assert not ok and msg


def test_06_2_message_names_the_pad_bug():
    ok, msg = run_check("06.2", loss_counts_pads)
    assert not ok and "counts the pad positions" in msg


# ---------------------------------------------------------------------------------------------- 06.3


def ppl_ok(losses, counts):
    return math.exp(sum(loss * n for loss, n in zip(losses, counts)) / sum(counts))


def ppl_tensor(losses, counts):
    losses, counts = torch.tensor(losses, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64)
    return torch.exp((losses * counts).sum() / counts.sum())


def ppl_mean_of_means(losses, counts):
    return math.exp(sum(losses) / len(losses))


def ppl_no_exp(losses, counts):
    return sum(loss * n for loss, n in zip(losses, counts)) / sum(counts)


def ppl_mean_of_exps(losses, counts):
    return sum(math.exp(loss) * n for loss, n in zip(losses, counts)) / sum(counts)


def ppl_base2(losses, counts):
    return 2 ** (sum(loss * n for loss, n in zip(losses, counts)) / sum(counts))


def test_06_3_reference_passes():
    assert run_check("06.3", ppl_ok)[0]
    assert run_check("06.3", ppl_tensor)[0]


@pytest.mark.parametrize("wrong", [ppl_mean_of_means, ppl_no_exp, ppl_mean_of_exps, ppl_base2])
def test_06_3_wrong(wrong):
    ok, msg = run_check("06.3", wrong)
    assert not ok and msg


def test_06_3_message_names_mean_of_means():
    assert "averaged the batch means" in run_check("06.3", ppl_mean_of_means)[1]


# ---------------------------------------------------------------------------------------------- 06.4


def sample_ok(logits, temperature, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)[:, 0]


def sample_categorical(logits, temperature, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return torch.distributions.Categorical(logits=logits / temperature).sample()  # ignores the generator


def sample_times_t(logits, temperature, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits * temperature, -1), 1, generator=generator)[:, 0]


def sample_ignores_t(logits, temperature, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]


def sample_always_greedy(logits, temperature, generator=None):
    return logits.argmax(-1)


def sample_keepdim(logits, temperature, generator=None):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)


def sample_uniform(logits, temperature, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return torch.randint(0, logits.size(-1), (logits.size(0),), generator=generator)


def sample_t0_crashes(logits, temperature, generator=None):
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]


def test_06_4_reference_and_categorical_pass():
    assert run_check("06.4", sample_ok)[0]
    assert run_check("06.4", sample_categorical)[0]


@pytest.mark.parametrize("wrong", [sample_times_t, sample_ignores_t, sample_always_greedy, sample_keepdim,
                                   sample_uniform, sample_t0_crashes])
def test_06_4_wrong(wrong):
    ok, msg = run_check("06.4", wrong)
    assert not ok and msg


@pytest.mark.parametrize("id", ["06.1", "06.2", "06.3", "06.4"])
def test_not_implemented_is_reported(id):
    def todo(*args, **kwargs):
        raise NotImplementedError

    ok, msg = run_check(id, todo)
    assert not ok and "not implemented" in msg
