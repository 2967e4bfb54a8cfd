import math

import pytest
import torch
import torch.nn.functional as F

from labsupport.attention import CausalSelfAttention, cross_attention
from labsupport.config import CfgNode


def make_config(n_embd=12, n_head=3, block_size=16, pdrop=0.0):
    return CfgNode(n_embd=n_embd, n_head=n_head, block_size=block_size, attn_pdrop=pdrop, resid_pdrop=pdrop)


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return CausalSelfAttention(make_config()).eval()


def sdpa_attention(m: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The same layer written with PyTorch's fused kernel, using m's weights."""
    B, T, C = x.shape
    nh = m.n_head

    def heads(t):
        return t.view(B, T, nh, C // nh).transpose(1, 2)

    y = F.scaled_dot_product_attention(heads(m.query(x)), heads(m.key(x)), heads(m.value(x)), is_causal=True)
    return m.proj(y.transpose(1, 2).reshape(B, T, C))


def test_matches_scaled_dot_product_attention(attn):
    x = torch.randn(2, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), sdpa_attention(attn, x), atol=1e-6, rtol=1e-5)


def test_matches_torch_multihead_attention_outputs_and_weights(attn):
    mha = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]))
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(3, 7, 12)
    future = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        ref, ref_w = mha(x, x, x, attn_mask=future, average_attn_weights=False)
        y, w = attn(x, return_weights=True)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    assert w.shape == (3, 3, 7, 7)


def test_weights_are_causal_and_normalised(attn):
    _, w = attn(torch.randn(2, 9, 12), return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 9))
    assert torch.all(w.triu(diagonal=1) == 0)


def test_output_at_t_ignores_later_positions(attn):
    x = torch.randn(1, 10, 12)
    t = 4
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(1, 10 - t - 1, 12)
    with torch.no_grad():
        y, y2 = attn(x), attn(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:])  # later positions do see the change
    x3 = x.clone()
    x3[:, t] += 1.0
    with torch.no_grad():
        y3 = attn(x3)
    assert not torch.allclose(y[:, t], y3[:, t])  # position t sees itself


def test_dropout_active_only_in_train_mode():
    torch.manual_seed(0)
    m = CausalSelfAttention(make_config(pdrop=0.5))
    x = torch.randn(2, 6, 12)
    assert not torch.allclose(m.train()(x), m(x))
    torch.testing.assert_close(m.eval()(x), m(x))


def test_bad_inputs_raise_clear_errors(attn):
    with pytest.raises(ValueError, match="block_size"):
        attn(torch.randn(1, 17, 12))
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(make_config(n_embd=10, n_head=3))


def test_cross_attention_matches_hand_computation():
    S1 = torch.tensor([[1.0, 2.0, 3.0]])  # keys / values come from here, T1 = 3
    S2 = torch.tensor([[0.5, -1.0]])  # queries come from here, T2 = 2
    W_Q = torch.tensor([[1.0, 0.5]])
    W_K = torch.tensor([[0.2, -0.3]])
    W_V = torch.tensor([[2.0, 1.0]])
    out, weights = cross_attention(S1, S2, W_Q, W_K, W_V, return_weights=True)

    d = 2
    expected, expected_w = [], []
    for s2 in S2[0].tolist():
        q = [s2 * w for w in W_Q[0].tolist()]
        scores = [sum(qi * s1 * k for qi, k in zip(q, W_K[0].tolist())) / math.sqrt(d) for s1 in S1[0].tolist()]
        e = [math.exp(s) for s in scores]
        a = [v / sum(e) for v in e]
        expected_w.append(a)
        expected.append([sum(ai * s1 * wv for ai, s1 in zip(a, S1[0].tolist())) for wv in W_V[0].tolist()])
    torch.testing.assert_close(out, torch.tensor(expected))
    torch.testing.assert_close(weights, torch.tensor(expected_w))
    assert out.shape == (2, 2) and weights.shape == (2, 3)
    torch.testing.assert_close(cross_attention(S1, S2, W_Q, W_K, W_V), out)


def test_cross_attention_rejects_mismatched_shapes():
    S = torch.ones(1, 3)
    W = torch.ones(1, 2)
    with pytest.raises(ValueError, match="2-D"):
        cross_attention(torch.ones(3), S, W, W, W)
    with pytest.raises(ValueError, match="feature sizes"):
        cross_attention(S, S, torch.ones(2, 2), W, W)
