"""Lab 02's self-checks pass the reference solutions (and correct alternatives) and catch typical wrong answers."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labsupport import bpe
from labsupport.attention import CausalSelfAttention, cross_attention
from labsupport.check import run_check
from labsupport.checks import lab02

# ---------------------------------------------------------------------------------------------- 02.1


def cross_attention_loop(S1, S2, W_Q, W_K, W_V):  # a correct alternative: one query at a time
    K, V = S1.T @ W_K, S1.T @ W_V
    rows = []
    for q in S2.T @ W_Q:  # (d,)
        w = torch.exp(K @ q / math.sqrt(K.shape[1]) - (K @ q / math.sqrt(K.shape[1])).max())
        rows.append((w / w.sum()) @ V)
    return torch.stack(rows)


def cross_no_scaling(S1, S2, W_Q, W_K, W_V):
    return torch.softmax((S2.T @ W_Q) @ (S1.T @ W_K).T, dim=-1) @ (S1.T @ W_V)


def cross_softmax_over_queries(S1, S2, W_Q, W_K, W_V):
    scores = (S2.T @ W_Q) @ (S1.T @ W_K).T / math.sqrt(W_K.shape[1])
    return torch.softmax(scores, dim=0) @ (S1.T @ W_V)


def cross_queries_from_s1(S1, S2, W_Q, W_K, W_V):  # roles swapped
    return cross_attention(S2, S1, W_Q, W_K, W_V)


def cross_returns_weights_too(S1, S2, W_Q, W_K, W_V):
    return cross_attention(S1, S2, W_Q, W_K, W_V, return_weights=True)


@pytest.mark.parametrize("fn", [cross_attention, cross_attention_loop])
def test_cross_attention_passes(fn):
    ok, msg = run_check("02.1", fn)
    assert ok, msg


@pytest.mark.parametrize("fn, expect", [
    (cross_no_scaling, "not divided by sqrt(d)"),
    (cross_softmax_over_queries, "over the queries"),
    (cross_queries_from_s1, "expected shape"),
    (cross_returns_weights_too, "return one tensor"),
])
def test_cross_attention_fails(fn, expect):
    ok, msg = run_check("02.1", fn)
    assert not ok and expect in msg, msg


def test_classic_ids_are_the_gpt2_bpe_ids():
    assert tuple(bpe.encode(t) for t in lab02.CLASSIC_TEXTS) == lab02.CLASSIC_IDS
    assert bpe.decode(lab02.CLASSIC_IDS[0][3:4]) == " Lisbon"


def test_classic_example_saturates_to_lisbon():
    args = lab02.classic_example()
    out, w = cross_attention(*args, return_weights=True)
    assert torch.equal(w, torch.zeros_like(w).index_fill_(1, torch.tensor([3]), 1.0))  # every query -> " Lisbon"
    torch.testing.assert_close(out, (args[0][:, 3:4].T @ args[4]).expand(3, 3))


# ---------------------------------------------------------------------------------------------- 02.2


class Student(nn.Module):
    """A student-style attention class; the class attributes switch on one typical mistake each."""

    scale, causal, softmax_dim, use_proj, attn_drop, resid_drop = True, True, -1, True, True, True

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.n_head = config.n_head
        self.query, self.key, self.value, self.proj = (nn.Linear(C, C) for _ in range(4))
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = (lin(x).view(B, T, self.n_head, hs).transpose(1, 2) for lin in (self.query, self.key, self.value))
        att = q @ k.transpose(-2, -1) / (math.sqrt(hs) if self.scale else 1.0)
        if self.causal:
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        att = torch.softmax(att, dim=self.softmax_dim)
        if self.attn_drop:
            att = self.attn_dropout(att)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        if self.use_proj:
            y = self.proj(y)
        return self.resid_dropout(y) if self.resid_drop else y


class StudentSDPA(Student):  # correct: the fused kernel with its own dropout argument
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.n_head, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        p = self.attn_dropout.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MinGPTStyle(Student):  # correct: minGPT's persistent float mask buffer named "bias", dropout via F.dropout
    def __init__(self, config):
        super().__init__(config)
        bs = config.block_size
        self.register_buffer("bias", torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs))
        self.p_attn, self.p_resid = config.attn_pdrop, config.resid_pdrop

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.n_head, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.dropout(F.softmax(att, dim=-1), self.p_attn, self.training)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return F.dropout(self.proj(y), self.p_resid, self.training)


def variant(**flags):
    return type("Wrong", (Student,), flags)


class NoProjAttribute(Student):
    def __init__(self, config):
        super().__init__(config)
        del self.proj
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)


class SplitHeadsWithoutTranspose(Student):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, self.n_head, T, -1) for lin in (self.query, self.key, self.value))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.n_head)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        y = self.attn_dropout(torch.softmax(att, dim=-1)) @ v
        return self.resid_dropout(self.proj(y.reshape(B, T, C)))


class DropoutAlwaysOn(Student):  # functional dropout that ignores eval mode
    def forward(self, x):
        return F.dropout(super().forward(x), p=0.5, training=True)


@pytest.mark.parametrize("cls", [CausalSelfAttention, Student, StudentSDPA, MinGPTStyle])
def test_self_attention_passes(cls):
    ok, msg = run_check("02.2", cls)
    assert ok, msg


@pytest.mark.parametrize("cls, expect", [
    (variant(scale=False), "not divided by sqrt(head_size)"),
    (variant(softmax_dim=-2), "over the queries"),
    (variant(causal=False), "must not see the future (it looks like the causal mask is missing)"),
    (variant(use_proj=False), "self.proj is not applied"),
    (SplitHeadsWithoutTranspose, "view(B, T, nh, hs)"),
    (variant(attn_drop=False), "attention dropout"),
    (variant(resid_drop=False), "residual dropout"),
    (NoProjAttribute, "self.proj must be nn.Linear(12, 12)"),
    (DropoutAlwaysOn, "eval mode"),
])
def test_self_attention_fails(cls, expect):
    ok, msg = run_check("02.2", cls)
    assert not ok and expect in msg, msg


def test_self_attention_check_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    run_check("02.2", Student)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_future_leak_that_no_listed_mistake_explains_fails_causality():
    class PeeksAtLastToken(Student):
        def forward(self, x):
            return super().forward(x) + 0.1 * x[:, -1:, :]

    ok, msg = run_check("02.2", PeeksAtLastToken)
    assert not ok and "must not see the future" in msg and "looks like" not in msg, msg


def test_a_causal_but_wrong_output_reports_the_difference():
    class Shifted(Student):
        def forward(self, x):
            return super().forward(x) + 0.01

    ok, msg = run_check("02.2", Shifted)
    assert not ok and "max abs difference 0.01" in msg, msg


# ---------------------------------------------------------------------------------------------- 02.4


@pytest.mark.parametrize("fn", [lab02.top_attended_reference,
                                lambda att, layer: att[layer].squeeze(0).max(dim=-1).indices.tolist()])
def test_top_attended_passes(fn):
    ok, msg = run_check("02.4", fn)
    assert ok, msg


@pytest.mark.parametrize("fn, expect", [
    (lambda att, layer: att[layer][0].argmax(dim=-2), "over the queries"),
    (lambda att, layer: att[0][0].argmax(dim=-1), "ignores `layer`"),
    (lambda att, layer: att[layer][0].max(dim=-1).values, "integer key positions"),
    (lambda att, layer: att[layer].argmax(dim=-1), "(heads, T)"),
])
def test_top_attended_fails(fn, expect):
    ok, msg = run_check("02.4", fn)
    assert not ok and expect in msg, msg


def test_top_attended_on_a_real_pattern():
    eye = torch.eye(5).roll(1, dims=1)  # every query attends to the next position (the last one wraps to 0)
    att = (eye.expand(1, 2, 5, 5).clone(),)
    assert lab02.top_attended_reference(att, 0).tolist() == [[1, 2, 3, 4, 0]] * 2
