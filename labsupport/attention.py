"""Reference attention: a one-feature cross-attention and multi-head causal self-attention.

Both spell the math out (no `F.scaled_dot_product_attention`) so you can read every step:

    scores  = Q K^T / sqrt(d)          how well each query matches each key
    weights = softmax(scores, keys)    each query's weights over the keys sum to 1
    output  = weights V                a weighted average of the values
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def cross_attention(
    S1: torch.Tensor,
    S2: torch.Tensor,
    W_Q: torch.Tensor,
    W_K: torch.Tensor,
    W_V: torch.Tensor,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Single-head cross-attention: sequence S2 asks (queries), sequence S1 answers (keys and values).

    S1: (1, T1) and S2: (1, T2) float tensors, one feature per position (more generally (d_in, T)).
    W_Q, W_K, W_V: (1, d) projection matrices (generally (d_in, d)).
    Returns the (T2, d) output, and the (T2, T1) attention weights too when `return_weights`.
    """
    for name, t in (("S1", S1), ("S2", S2), ("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V)):
        if t.dim() != 2:
            raise ValueError(f"{name} must be a 2-D tensor, got shape {tuple(t.shape)}")
    if not (S1.shape[0] == S2.shape[0] == W_Q.shape[0] == W_K.shape[0] == W_V.shape[0]):
        raise ValueError(
            f"feature sizes differ: S1 {tuple(S1.shape)}, S2 {tuple(S2.shape)}, W_Q {tuple(W_Q.shape)}, "
            f"W_K {tuple(W_K.shape)}, W_V {tuple(W_V.shape)}; S is (d_in, T) and each W is (d_in, d)"
        )
    if W_Q.shape[1] != W_K.shape[1]:
        raise ValueError(f"W_Q {tuple(W_Q.shape)} and W_K {tuple(W_K.shape)} must project to the same size")
    Q = S2.T @ W_Q  # (T2, d)  one query per position of S2
    K = S1.T @ W_K  # (T1, d)  one key per position of S1
    V = S1.T @ W_V  # (T1, d_v)
    scores = Q @ K.T / math.sqrt(K.shape[1])  # (T2, T1)
    weights = torch.softmax(scores, dim=-1)  # (T2, T1), normalised over the keys
    out = weights @ V  # (T2, d_v)
    return (out, weights) if return_weights else out


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention: position t attends to positions 0..t only.

    Built from a config with n_embd, n_head, attn_pdrop, resid_pdrop and block_size. A class with the
    same constructor signature and `forward(x) -> y` can replace it in `GPT` (config.attention_cls).
    """

    def __init__(self, config):
        super().__init__()
        if config.n_embd % config.n_head != 0:
            raise ValueError(f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})")
        C = config.n_embd
        self.n_head = config.n_head
        self.n_embd = C
        # separate projections (GPT-2 fuses them into one c_attn; splitting keeps the roles readable)
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.proj = nn.Linear(C, C)  # mixes the heads' outputs back together
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        # mask[t, s] = 1 where position t may look at position s (s <= t); not saved in checkpoints
        bs = config.block_size
        self.register_buffer("mask", torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs), persistent=False)

    def forward(
        self, x: torch.Tensor, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, C) -> (B, T, C); with `return_weights` also the (B, nh, T, T) attention weights."""
        B, T, C = x.size()
        if T > self.mask.size(-1):
            raise ValueError(f"sequence length {T} exceeds block_size {self.mask.size(-1)}; crop the input")
        nh, hs = self.n_head, C // self.n_head
        # project, then split the channels into heads: (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs)
        q = self.query(x).view(B, T, nh, hs).transpose(1, 2)
        k = self.key(x).view(B, T, nh, hs).transpose(1, 2)
        v = self.value(x).view(B, T, nh, hs).transpose(1, 2)
        # (B, nh, T, hs) @ (B, nh, hs, T) -> (B, nh, T, T); scaling keeps the softmax from saturating
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))  # hide the future
        att = F.softmax(att, dim=-1)  # each row sums to 1 over the visible keys
        weights = att
        att = self.attn_dropout(att)
        y = att @ v  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side: (B, T, C)
        y = self.resid_dropout(self.proj(y))
        return (y, weights) if return_weights else y
