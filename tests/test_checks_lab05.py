"""Lab 05 self-checks: each passes with the reference and fails (without raising) on plausible wrong answers."""

import math

import pytest

from labsupport import streaming
from labsupport.check import run_check


def test_references_pass():
    for ex_id, fn in [("05.1", streaming.format_example), ("05.2", streaming.make_blocks),
                      ("05.3", streaming.perplexity_from_losses)]:
        ok, msg = run_check(ex_id, fn)
        assert ok, f"{ex_id}: {msg}"


def not_implemented(*args, **kwargs):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------- 05.1

WRONG_FORMATS = {
    "no space": lambda ex: f"<sentiment_{ex['label']}>{ex['verse_text']}",
    "id instead of label": lambda ex: f"<sentiment_{ex['id']}> {ex['verse_text']}",
    "other tag": lambda ex: f"<label_{ex['label']}> {ex['verse_text']}",
    "stripped verse": lambda ex: f"<sentiment_{ex['label']}> {ex['verse_text'].strip()}",
    "tag after the verse": lambda ex: f"{ex['verse_text']} <sentiment_{ex['label']}>",
    "not implemented": not_implemented,
}


@pytest.mark.parametrize("name", WRONG_FORMATS)
def test_format_check_fails_on_wrong_answers(name):
    ok, msg = run_check("05.1", WRONG_FORMATS[name])
    assert not ok and msg


# ---------------------------------------------------------------------------------------------- 05.2


def blocks_without_eos(docs, block_size, stride, eos_id):
    streaming.check_block_args(block_size, stride)
    s = [t for d in docs for t in d]
    return [s[i : i + block_size] for i in range(0, max(len(s) - block_size + 1, 0), stride)]


def blocks_drop_partial(docs, block_size, stride, eos_id):
    return [b for b in streaming.make_blocks(docs, block_size, stride, eos_id) if len(b) == block_size]


def blocks_no_overlap(docs, block_size, stride, eos_id):  # ignores the stride
    return list(streaming.make_blocks(docs, block_size, block_size, eos_id))


def blocks_any_leftover(docs, block_size, stride, eos_id):  # emits leftovers that earlier blocks already hold
    streaming.check_block_args(block_size, stride)
    s = [t for d in docs for t in (*d, eos_id)]
    out, i = [], 0
    while i + block_size <= len(s):
        out.append(s[i : i + block_size])
        i += stride
    return out + ([s[i:]] if i < len(s) else [])


def blocks_no_checks(docs, block_size, stride, eos_id):
    return list(streaming.make_blocks(docs, block_size, max(1, min(stride, block_size)), eos_id)) if (
        block_size >= 2) else []


def blocks_list_only(docs, block_size, stride, eos_id):  # indexes its input: fails on a generator
    return list(streaming.make_blocks([docs[i] for i in range(len(docs))], block_size, stride, eos_id))


@pytest.mark.parametrize("wrong", [blocks_without_eos, blocks_drop_partial, blocks_no_overlap, blocks_any_leftover,
                                   blocks_no_checks, blocks_list_only, not_implemented])
def test_blocks_check_fails_on_wrong_answers(wrong):
    ok, msg = run_check("05.2", wrong)
    assert not ok and msg


# ---------------------------------------------------------------------------------------------- 05.3


def mean_of_exp(losses, n_tokens=None):
    losses = [float(x) for x in losses]
    if not losses:
        raise ValueError("empty")
    return sum(math.exp(x) for x in losses) / len(losses)


def ignores_weights(losses, n_tokens=None):
    losses = [float(x) for x in losses]
    if not losses:
        raise ValueError("empty")
    return math.exp(sum(losses) / len(losses))


def nan_on_empty(losses, n_tokens=None):
    losses = [float(x) for x in losses]
    if not losses:
        return float("nan")
    return streaming.perplexity_from_losses(losses, n_tokens)


def exp_of_sum(losses, n_tokens=None):
    losses = [float(x) for x in losses]
    if not losses:
        raise ValueError("empty")
    return math.exp(sum(losses))


@pytest.mark.parametrize("wrong", [mean_of_exp, ignores_weights, nan_on_empty, exp_of_sum, not_implemented])
def test_perplexity_check_fails_on_wrong_answers(wrong):
    ok, msg = run_check("05.3", wrong)
    assert not ok and msg
