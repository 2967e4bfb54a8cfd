import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labsupport.generate import (
    GenerationDetails,
    apply_temperature,
    block_size,
    generate,
    generation_table,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from labsupport.textdata import WordVocab

V = 12


class Bigram(nn.Module):
    """Stand-in for the lab GPT: forward(idx) -> (logits (B, T, V), None), logits depend on the current token."""

    def __init__(self, table: torch.Tensor, block_size: int | None = None):
        super().__init__()
        self.table = nn.Parameter(table.clone())  # (V, V)
        if block_size is not None:
            self.block_size = block_size
        self.max_seen = 0

    def forward(self, idx, targets=None):
        self.max_seen = max(self.max_seen, idx.size(1))
        return self.table[idx], None


def successor_table(strength: float = 10.0) -> torch.Tensor:
    """Token t is followed by t + 1 (mod V) with near certainty."""
    return strength * torch.eye(V).roll(1, dims=1)


@pytest.fixture(scope="module")
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=1,
                     pad_token_id=1)
    return GPT2LMHeadModel(cfg).eval()


# ---------------------------------------------------------------------------------------------- pure filters


def random_logits(rows=64, vocab=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(-3, 4, (rows, vocab), generator=g).float()  # small integers: many ties
    logits[: rows // 2] += torch.randn(rows // 2, vocab, generator=g)  # and some rows without ties
    return logits


@pytest.mark.parametrize("k", [1, 2, 3, 7, 10, 15])
def test_top_k_matches_brute_force(k):
    logits = random_logits()
    before = logits.clone()
    out = top_k_filter(logits, k)
    assert torch.equal(logits, before)  # not modified in place
    for row, got in zip(logits, out):
        keep = torch.tensor([(row > x).sum() < k for x in row])  # fewer than k strictly larger -> kept
        assert torch.equal(torch.isfinite(got), keep)
        assert torch.equal(got[keep], row[keep])
        assert keep.sum() >= min(k, row.numel())


@pytest.mark.parametrize("p", [1e-6, 0.1, 0.35, 0.5, 0.8, 0.95, 1.0])
def test_top_p_matches_brute_force(p):
    logits = random_logits(seed=1)
    before = logits.clone()
    out = top_p_filter(logits, p)
    assert torch.equal(logits, before)
    for row, got in zip(logits, out):
        probs = F.softmax(row.double(), dim=-1)
        keep = torch.tensor([probs[probs > q].sum() < p for q in probs])  # mass strictly above < p -> kept
        assert torch.equal(torch.isfinite(got), keep)
        assert torch.equal(got[keep], row[keep])
        assert probs[keep].sum() >= min(p, 1.0) - 1e-6
    if p == 1.0:
        assert torch.equal(out, logits)


def test_filters_batched_shapes_and_temperature():
    logits = torch.randn(2, 3, V)
    assert top_k_filter(logits, 3).shape == logits.shape
    assert torch.isfinite(top_k_filter(logits, 3)).sum(-1).eq(3).all()
    assert top_p_filter(logits, 0.5).shape == logits.shape
    assert torch.allclose(apply_temperature(logits, 0.5), logits * 2)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_frequencies_match_softmax(temperature):
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0, 2.0, 0.2, -2.0])
    n = 40_000
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits.expand(n, -1), temperature, generator=g)
    observed = torch.bincount(draws, minlength=len(logits)).double()
    expected = n * F.softmax(logits.double() / temperature, dim=-1)
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.32  # chi-square critical value, 7 degrees of freedom, alpha = 0.001


def test_sampling_with_top_k_and_top_p_renormalises():
    logits = torch.tensor([2.0, 1.5, 1.0, 0.0, -1.0, -2.0])
    n = 30_000
    g = torch.Generator().manual_seed(1)
    draws = sample_next(logits.expand(n, -1), 1.0, top_k=4, top_p=0.8, generator=g)
    kept = torch.isfinite(top_p_filter(top_k_filter(logits, 4), 0.8))
    assert kept.tolist() == [True, True, True, False, False, False]
    observed = torch.bincount(draws, minlength=len(logits)).double()
    assert observed[~kept].sum() == 0
    expected = n * F.softmax(logits[kept].double(), dim=-1)
    assert ((observed[kept] - expected) ** 2 / expected).sum().item() < 13.82  # 2 d.o.f., alpha = 0.001


def test_sample_next_greedy_and_suppress():
    logits = torch.randn(5, V)
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1))
    assert sample_next(logits[0], 0.0).shape == ()
    masked = sample_next(logits, 0.0, suppress_ids=logits.argmax(-1).tolist())
    assert not torch.isin(masked, logits.argmax(-1)).any()


def test_invalid_args_raise_value_error():
    logits = torch.randn(2, V)
    for kwargs, match in [({"temperature": -0.1}, "temperature"), ({"top_k": 0}, "top_k"),
                          ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")]:
        with pytest.raises(ValueError, match=match):
            sample_next(logits, **kwargs)
    with pytest.raises(ValueError, match="greedy"):
        apply_temperature(logits, 0)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(logits, -1)
    with pytest.raises(ValueError, match="suppress_ids"):
        sample_next(logits, suppress_ids=[V])
    with pytest.raises(ValueError, match="whole vocabulary"):
        sample_next(logits, suppress_ids=range(V))
    model = Bigram(torch.randn(V, V))
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [1], -1)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [1], 3, temperature=-1)
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)


# ---------------------------------------------------------------------------------------------- generate


def test_greedy_equals_step_by_step_argmax():
    torch.manual_seed(0)
    model = Bigram(torch.randn(V, V))
    idx = torch.tensor([[3], [7]])
    out = generate(model, idx, 8, temperature=0)
    assert out.shape == (2, 9) and torch.equal(out[:, :1], idx)
    for t in range(1, 9):
        assert torch.equal(out[:, t], model.table[out[:, t - 1]].argmax(-1))
    assert not out.is_inference() and model.training  # an ordinary tensor; train mode restored


def test_greedy_equals_hf_generate(tiny_gpt2):
    prompt = torch.tensor([[5, 9, 2, 33], [7, 7, 8, 60]])
    ours = generate(tiny_gpt2, prompt, 10, temperature=0)
    theirs = tiny_gpt2.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=10,
                                eos_token_id=None, pad_token_id=1)
    assert torch.equal(ours, theirs)
    assert block_size(tiny_gpt2) == 16
    long = generate(tiny_gpt2, torch.randint(0, 64, (1, 20)), 3, temperature=0)  # longer than n_positions
    assert long.shape == (1, 23)


def test_context_is_cropped_to_block_size():
    model = Bigram(torch.randn(V, V), block_size=4)
    out = generate(model, torch.randint(0, V, (1, 6)), 5, seed=0)
    assert out.shape == (1, 11) and model.max_seen == 4


def test_seed_reproducible_and_leaves_global_rng_alone():
    model = Bigram(torch.zeros(V, V))  # uniform next-token distribution
    state = torch.get_rng_state()
    a = generate(model, [0], 30, seed=123)
    b = generate(model, [0], 30, seed=123)
    c = generate(model, [0], 30, seed=124)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (31,) and torch.equal(a, b) and not torch.equal(a, c)


def test_suppress_ids_are_never_emitted():
    table = torch.zeros(V, V)
    table[:, 0] = 8.0  # the model loves token 0 (think <unk>)
    model = Bigram(table)
    for kwargs in ({"temperature": 0}, {"temperature": 1.0, "seed": 0}, {"temperature": 2.0, "top_k": 2, "seed": 1}):
        out = generate(model, torch.zeros(4, 1, dtype=torch.long), 40, suppress_ids=[0, 5], **kwargs)
        assert not torch.isin(out[:, 1:], torch.tensor([0, 5])).any()


def test_eos_stops_each_row_and_pads_finished_rows():
    model = Bigram(successor_table())
    out = generate(model, torch.tensor([[2], [0]]), 10, temperature=0, eos_id=5)
    assert out.tolist() == [[2, 3, 4, 5, 5, 5], [0, 1, 2, 3, 4, 5]]  # stops when every row has finished
    single = generate(model, [3], 10, temperature=0, eos_id=5)
    assert single.tolist() == [3, 4, 5]
    assert generate(model, [3], 4, temperature=0).tolist() == [3, 4, 5, 6, 7]  # no eos_id: runs to the end


def test_details_report_model_probabilities():
    torch.manual_seed(0)
    model = Bigram(torch.randn(V, V))
    out, details = generate(model, torch.tensor([[1], [4]]), 5, seed=0, top_k=3, return_details=True, top_n=4)
    assert isinstance(details, GenerationDetails)
    assert details.token_ids.shape == details.token_probs.shape == (2, 5)
    assert details.top_ids.shape == details.top_probs.shape == (2, 5, 4)
    assert torch.equal(details.token_ids, out[:, 1:])
    probs = F.softmax(model.table.detach()[out[:, :-1]], dim=-1)  # (2, 5, V)
    assert torch.allclose(details.token_probs, probs.gather(-1, out[:, 1:, None])[..., 0])
    assert torch.allclose(details.top_probs, probs.topk(4, dim=-1).values)
    _, d = generate(Bigram(successor_table()), torch.tensor([[3], [0]]), 6, temperature=0, eos_id=5,
                    return_details=True)
    assert torch.isnan(d.token_probs[0, 3:]).all() and not torch.isnan(d.token_probs[1]).any()
    _, empty = generate(model, [1], 0, return_details=True)
    assert empty.token_ids.shape == (1, 0) and empty.top_ids.shape == (1, 0, 6)


def test_works_with_hf_sampling(tiny_gpt2):
    prompt = torch.tensor([[5, 9]])
    a = generate(tiny_gpt2, prompt, 6, top_p=0.9, temperature=0.8, seed=3, suppress_ids=[0])
    assert torch.equal(a, generate(tiny_gpt2, prompt, 6, top_p=0.9, temperature=0.8, seed=3, suppress_ids=[0]))
    assert a.shape == (1, 8) and not (a[0, 2:] == 0).any()


# ---------------------------------------------------------------------------------------------- generation_table


def test_generation_table_shape_and_labels():
    model = Bigram(successor_table(strength=1.0))
    vocab = WordVocab([f"w{i}" for i in range(V - 4)])  # ids 4.. -> "w0".. ; 0..3 are the specials
    table = generation_table(model, vocab, [4], 14, top_n=6, temperature=0)
    assert table.shape == (6, 14)
    assert list(table.index) == [f"top {i}" for i in range(1, 7)]
    labels = list(table.columns)
    assert labels[:3] == ["w1", "w2", "w3"] and len(set(labels)) == 14
    assert labels[12] == "w1 [2]"  # the cycle repeats: labels made unique
    assert all(re.fullmatch(r"\S+ \(p=0\.\d{3}\)", cell) for cell in table.to_numpy().ravel())
    assert table.iloc[0, 0].startswith("w1 ")  # greedy: the chosen token is the top candidate
    by_callable = generation_table(model, lambda ids: f"<{ids[0]}>", torch.tensor([[4]]), 3, temperature=0)
    assert list(by_callable.columns) == ["<5>", "<6>", "<7>"]
    with pytest.raises(TypeError, match="decode"):
        generation_table(model, 42, [4], 2)


def test_generation_table_with_hf_tokenizer(tiny_gpt2):
    from labsupport.bpe import hf_gpt2_tokenizer

    tok = hf_gpt2_tokenizer()
    table = generation_table(tiny_gpt2, tok, [5, 9], 4, top_n=3, temperature=0)
    assert table.shape == (3, 4)
    assert table.columns[0] == tok.decode([int(generate(tiny_gpt2, [5, 9], 1, temperature=0)[-1])])
