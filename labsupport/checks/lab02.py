"""Self-checks for Lab 02 (attention). Each driver runs the student's code on small fixed inputs and records
the outputs; the judges compare them with `labsupport.attention` (and, for 02.2, with PyTorch's fused
`F.scaled_dot_product_attention`). Protocol: labsupport/check.py.

When an answer is wrong, the judges also run a few typical mistakes (no 1/sqrt(d) scaling, softmax over
the wrong axis, no causal mask, ...) on the same inputs and name the one the student's output matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from labsupport.check import Records, Trace, WrongAnswer, exercise, expect_close, expect_tensor, is_close
from labsupport.config import CfgNode

ATOL = 1e-5

# ---------------------------------------------------------------------------------------------- helpers


def _diagnosis(got: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> str:
    """' (it looks like <mistake>)' when `got` matches the output of a typical mistake, else ''."""
    for name, wrong in mistakes.items():
        if is_close(got, wrong, rtol=1e-4, atol=ATOL):
            return f" (it looks like {name})"
    return ""


def _mismatch(what: str, got: torch.Tensor, want: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> AssertionError:
    try:
        expect_close(got, want, what, rtol=1e-4, atol=ATOL)
    except WrongAnswer as err:
        return WrongAnswer(f"{err}{_diagnosis(got, mistakes)}")
    return WrongAnswer(f"{what}: differs from the reference")


# ---------------------------------------------------------------------------------------------- 02.1


CLASSIC_TEXTS = ("I travelled to Lisbon in July to attend an NLP summer school", "I like traveling")
# their GPT-2 BPE ids (= labsupport.bpe.encode(text); tests/test_checks_lab02.py keeps them in sync), kept
# literal so the check does not load the tokenizer
CLASSIC_IDS = ([40, 21650, 284, 41898, 287, 2901, 284, 5262, 281, 399, 19930, 3931, 1524], [40, 588, 11300])


def classic_example() -> tuple[torch.Tensor, ...]:
    """The worked example: (S1, S2, W_Q, W_K, W_V), the sentences' token ids as (1, T) float rows."""
    S1 = torch.tensor([CLASSIC_IDS[0]], dtype=torch.float32)  # (1, T1): one feature (the id) per position
    S2 = torch.tensor([CLASSIC_IDS[1]], dtype=torch.float32)  # (1, T2)
    W_Q = torch.tensor([[0.1, 0.2, 0.3]])  # (1, 3)
    W_K = torch.tensor([[0.7, 0.8, 0.9]])
    W_V = torch.tensor([[1.6, 1.7, 1.8]])
    return S1, S2, W_Q, W_K, W_V


def _cross_variant(S1, S2, W_Q, W_K, W_V, scale: bool = True, dim: int = -1) -> torch.Tensor:
    Q, K, V = S2.T @ W_Q, S1.T @ W_K, S1.T @ W_V  # (T2, d), (T1, d), (T1, d_v)
    scores = Q @ K.T / (math.sqrt(K.shape[1]) if scale else 1.0)  # (T2, T1)
    return torch.softmax(scores, dim=dim) @ V


def _cross_cases() -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    g = torch.Generator().manual_seed(2)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    cases = [("the worked example (token ids)", classic_example())]
    # well-scaled inputs, where the softmax is not saturated, so scaling and axis mistakes show
    for d_in, t1, t2, d, d_v in [(1, 7, 5, 3, 3), (1, 6, 6, 3, 3), (2, 4, 6, 4, 5)]:
        cases.append((f"random S1 ({d_in}, {t1}), S2 ({d_in}, {t2}), W_Q/W_K ({d_in}, {d}), W_V ({d_in}, {d_v})",
                      (randn(d_in, t1), randn(d_in, t2), randn(d_in, d), randn(d_in, d), randn(d_in, d_v))))
    return cases


CROSS_CASES = _cross_cases()  # inputs, built at import: graded references are tripwired while grading


def _judge_cross(got: Records, want: Records) -> str:
    for (_what, args), (label, w) in zip(CROSS_CASES, want.items_, strict=True):
        g = got.get(label)
        if g is None:
            raise WrongAnswer(f"{label}: no result recorded")
        if not is_close(g, w, rtol=1e-4, atol=ATOL * max(1.0, w.abs().max().item())):
            mistakes = {"the scores are not divided by sqrt(d)": _cross_variant(*args, scale=False),
                        "the softmax runs over the queries (dim=0) instead of the keys": _cross_variant(*args, dim=0)}
            raise _mismatch(label, g, w, mistakes)
    return "matches the reference on the worked example and 3 random cases"


@exercise("02.1", title="cross-attention",
          hint="the queries come from the sentence that asks (S2), keys and values from the one it reads (S1); "
               "scores are query-key dot products scaled by the square root of the key size, normalised over the "
               "keys",
          hint2="matrix products with @ on the transposed inputs, math.sqrt, torch.softmax over the last "
                "dimension",
          reference=["labsupport.attention:cross_attention"], judge=_judge_cross)
def drive_cross_attention(t: Trace, cross_attention: Callable) -> None:
    for what, args in CROSS_CASES:
        t.record(f"cross_attention on {what}", expect_tensor(cross_attention(*(a.clone() for a in args)),
                                                            "cross_attention"))


# ---------------------------------------------------------------------------------------------- 02.2

PROJECTIONS = ("query", "key", "value", "proj")


def attention_config(n_embd: int = 12, n_head: int = 3, block_size: int = 8, attn_pdrop: float = 0.125,
                     resid_pdrop: float = 0.375) -> CfgNode:
    """The config fields an attention class gets from `GPT` (config.attention_cls)."""
    return CfgNode(n_embd=n_embd, n_head=n_head, block_size=block_size, attn_pdrop=attn_pdrop,
                   resid_pdrop=resid_pdrop)


def _mha_variant(m: nn.Module, x: torch.Tensor, scale: bool = True, causal: bool = True, dim: int = -1,
                 proj: bool = True, transpose_heads: bool = True) -> torch.Tensor:
    """Multi-head causal self-attention with m's projections, optionally with one typical mistake."""
    B, T, C = x.shape
    nh = m.n_head
    hs = C // nh

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, nh, T, hs)
        return t.view(B, T, nh, hs).transpose(1, 2) if transpose_heads else t.view(B, nh, T, hs)

    q, k, v = heads(m.query(x)), heads(m.key(x)), heads(m.value(x))
    att = q @ k.transpose(-2, -1) / (math.sqrt(hs) if scale else 1.0)  # (B, nh, T, T)
    if causal:
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.softmax(att, dim=dim) @ v  # (B, nh, T, hs)
    y = y.transpose(1, 2).reshape(B, T, C) if transpose_heads else y.reshape(B, T, C)
    return m.proj(y) if proj else y


def _sdpa(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same layer through PyTorch's fused kernel (an independent reference)."""
    B, T, C = x.shape
    nh = m.n_head

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, T, nh, C // nh).transpose(1, 2)

    y = F.scaled_dot_product_attention(heads(m.query(x)), heads(m.key(x)), heads(m.value(x)), is_causal=True)
    return m.proj(y.transpose(1, 2).reshape(B, T, C))


def _weights(C: int, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Projection weights every implementation under test gets (nn.Linear's init, drawn from `seed`)."""
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(C)
    return {name: {"weight": (torch.rand(C, C, generator=g) * 2 - 1) * bound,
                   "bias": (torch.rand(C, generator=g) * 2 - 1) * bound} for name in PROJECTIONS}


class _Projections(nn.Module):
    """The reference's projections with `_weights`: what the judge runs the typical mistakes with."""

    def __init__(self, config: CfgNode):
        super().__init__()
        C, self.n_head = config.n_embd, config.n_head
        for name, state in _weights(C).items():
            setattr(self, name, nn.Linear(C, C))
            getattr(self, name).load_state_dict(state)


def _build(attention_cls: Callable, config: CfgNode) -> nn.Module:
    """The student's module with the shared projection weights copied in."""
    student = attention_cls(config)
    if type(student).__mro__.count(nn.Module) != 1 or not isinstance(student, nn.Module):
        raise AssertionError(f"{getattr(attention_cls, '__name__', attention_cls)}(config) must build an "
                             f"nn.Module, got {type(student).__name__}")
    C = config.n_embd
    for name, state in _weights(C).items():
        lin = getattr(student, name, None)
        if not isinstance(lin, nn.Linear) or (lin.in_features, lin.out_features) != (C, C) or lin.bias is None:
            raise AssertionError(f"self.{name} must be nn.Linear({C}, {C}) (with bias) for n_embd={C}; "
                                 f"got {lin!r}")
        lin.load_state_dict(state)
    return student


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return expect_tensor(module(x.clone()), "forward(x)")


CONFIG = attention_config()
_g = torch.Generator().manual_seed(0)
CAUSAL_X = torch.randn(2, CONFIG.block_size, CONFIG.n_embd, generator=_g)
CAUSAL_TS = (1, 4, CONFIG.block_size - 1)
CAUSAL_X2 = {}
for _t in CAUSAL_TS:
    CAUSAL_X2[_t] = CAUSAL_X.clone()
    CAUSAL_X2[_t][:, _t:] += torch.randn(2, CONFIG.block_size - _t, CONFIG.n_embd, generator=_g)
SHAPE_XS = [torch.randn(B, T, CONFIG.n_embd, generator=_g) for B, T in [(2, CONFIG.block_size), (3, 5), (1, 1)]]
DROPOUT_X = torch.randn(2, CONFIG.block_size, CONFIG.n_embd, generator=_g)
DROPOUT_CASES = [(1.0, 0.0, "bias", "attention dropout (nn.Dropout(config.attn_pdrop) on the attention weights)"),
                 (0.0, 1.0, "zeros", "residual dropout (nn.Dropout(config.resid_pdrop) after self.proj)")]


def _judge_mha(got: Records, want: Records) -> str:
    with torch.random.fork_rng(devices=[]):  # nn.Linear draws an init we overwrite: leave the caller's RNG alone
        ref = _Projections(CONFIG)
    missing = [k for k in want if k not in got]
    if missing:
        raise WrongAnswer(f"{missing[0]}: no result recorded")

    def explain(x: torch.Tensor, y: torch.Tensor) -> str:  # the typical mistake the output matches, if any
        with torch.no_grad():
            return _diagnosis(y, {
                "the scores are not divided by sqrt(head_size)": _mha_variant(ref, x, scale=False),
                "the softmax runs over the queries (dim=-2) instead of the keys": _mha_variant(ref, x, dim=-2),
                "the causal mask is missing": _mha_variant(ref, x, causal=False),
                "the output projection self.proj is not applied": _mha_variant(ref, x, proj=False),
                "the heads are split with view(B, nh, T, hs) instead of view(B, T, nh, hs).transpose(1, 2)":
                    _mha_variant(ref, x, transpose_heads=False),
            })

    y = got["forward(x)"]
    if y.shape != CAUSAL_X.shape:
        raise WrongAnswer(f"forward(x) on x of shape {tuple(CAUSAL_X.shape)} = (B, T, C) returned shape "
                          f"{tuple(y.shape)}; it must return (B, T, C)")
    if not torch.equal(got["forward(x) again"], y):
        raise WrongAnswer("two calls of forward(x) in eval mode gave different outputs: dropout must be off "
                          "in eval mode (use nn.Dropout modules, or F.dropout(..., training=self.training))")
    for t in CAUSAL_TS:
        y2 = got[f"forward(x changed at positions >= {t})"]
        if y2.shape != y.shape or not torch.allclose(y2[:, :t], y[:, :t], atol=1e-6):
            raise WrongAnswer(f"changing the inputs at positions >= {t} changed the outputs at positions "
                              f"< {t}: a token must not see the future{explain(CAUSAL_X, y)}")
    for x in SHAPE_XS:
        label = f"forward(x) on x of shape {tuple(x.shape)} in eval mode"
        g = got[label]
        with torch.no_grad():
            for name, w in (("labsupport.attention.CausalSelfAttention", want[label]),
                            ("F.scaled_dot_product_attention(is_causal=True)", _sdpa(ref, x))):
                if not is_close(g, w, rtol=1e-4, atol=ATOL):
                    what = f"{label}, compared with {name}"
                    if g.shape != w.shape:
                        raise WrongAnswer(f"{what}: expected shape {tuple(w.shape)}, got {tuple(g.shape)}")
                    raise WrongAnswer(f"{what}: max abs difference {(g - w).abs().max().item():.3g}{explain(x, g)}")
    for attn_p, resid_p, expect, what in DROPOUT_CASES:
        g = got[f"training mode, attn_pdrop={attn_p}, resid_pdrop={resid_p}"]
        target = ref.proj.bias.detach().expand_as(DROPOUT_X) if expect == "bias" else torch.zeros_like(DROPOUT_X)
        if g.shape != target.shape or not torch.allclose(g, target, atol=1e-6):
            raise WrongAnswer(f"with attn_pdrop={attn_p}, resid_pdrop={resid_p} in training mode the output "
                              f"should be {'proj.bias at every position' if expect == 'bias' else 'all zeros'}"
                              f": is the {what} missing, or does it ignore model.train()?")
    return ("matches labsupport's CausalSelfAttention and F.scaled_dot_product_attention(is_causal=True) "
            "(max abs diff < 1e-5), is causal, and applies both dropouts in training mode only")


@exercise("02.2", title="multi-head causal self-attention",
          hint="split the channels into heads, compute scaled dot-product scores per head, hide every future "
               "position before normalising, mix the values, merge the heads and project; dropout on the weights "
               "and on the output",
          hint2="Tensor.view and .transpose(1, 2) for the heads, masked_fill with float('-inf') from a "
                "lower-triangular mask, F.softmax(dim=-1), self.attn_dropout, .contiguous().view(B, T, C), "
                "self.proj, self.resid_dropout",
          reference=["labsupport.attention:CausalSelfAttention"], judge=_judge_mha)
def drive_causal_self_attention(t: Trace, attention_cls: Callable) -> None:
    with torch.random.fork_rng(devices=[]):  # building modules draws random weights: leave the caller's RNG alone
        torch.manual_seed(0)
        student = _build(attention_cls, CONFIG).eval()  # eval: both dropouts must be off
        t.record("forward(x)", _forward(student, CAUSAL_X))
        t.record("forward(x) again", _forward(student, CAUSAL_X))
        for t_ in CAUSAL_TS:
            t.record(f"forward(x changed at positions >= {t_})", _forward(student, CAUSAL_X2[t_]))
        for x in SHAPE_XS:
            t.record(f"forward(x) on x of shape {tuple(x.shape)} in eval mode", _forward(student, x))
        for attn_p, resid_p, _expect, _what in DROPOUT_CASES:
            m = _build(attention_cls, attention_config(attn_pdrop=attn_p, resid_pdrop=resid_p)).train()
            t.record(f"training mode, attn_pdrop={attn_p}, resid_pdrop={resid_p}", _forward(m, DROPOUT_X))


# ---------------------------------------------------------------------------------------------- 02.4


def top_attended_reference(attentions: tuple[torch.Tensor, ...], layer: int) -> torch.Tensor:
    """(heads, T): for each head and query position, the key position with the largest weight."""
    return attentions[layer][0].argmax(dim=-1)


def _fake_attentions(g: torch.Generator, n_layers: int = 3, n_heads: int = 4, T: int = 6) -> tuple[torch.Tensor, ...]:
    """Per-layer (1, heads, T, T) attention weights like a Hugging Face model returns (rows sum to 1)."""
    return tuple(torch.softmax(3 * torch.randn(1, n_heads, T, T, generator=g), dim=-1) for _ in range(n_layers))


_g4 = torch.Generator().manual_seed(4)
TOP_CASES = [(n_layers, n_heads, T, layer, _fake_attentions(_g4, n_layers, n_heads, T))
             for n_layers, n_heads, T, layer in [(3, 4, 6, 1), (3, 4, 6, -1), (2, 2, 5, 0)]]


def _top_label(n_layers: int, n_heads: int, T: int, layer: int) -> str:
    return f"top_attended(attentions of {n_layers} layers x {n_heads} heads x {T} tokens, layer={layer})"


def _judge_top(got: Records, want: Records) -> str:
    for n_layers, n_heads, T, layer, attentions in TOP_CASES:
        what = _top_label(n_layers, n_heads, T, layer)
        g, w = got.get(what), want[what]
        if g is None:
            raise WrongAnswer(f"{what}: no result recorded")
        g = torch.as_tensor(g)
        if g.is_floating_point():
            raise WrongAnswer("top_attended must return integer key positions (an argmax), got float values")
        if g.shape != w.shape:
            raise WrongAnswer(f"{what}: expected shape {tuple(w.shape)} = (heads, T), got {tuple(g.shape)}")
        if not torch.equal(g.long(), w.long()):
            a = attentions[layer][0]
            mistakes = {"the argmax runs over the queries (dim=-2) instead of the keys": a.argmax(dim=-2),
                        "it ignores `layer` and always uses layer 0": attentions[0][0].argmax(dim=-1)}
            wrong = next((f" (it looks like {n})" for n, m in mistakes.items() if torch.equal(g.long(), m)), "")
            raise WrongAnswer(f"{what}: {(g.long() != w.long()).sum().item()} of {w.numel()} positions "
                              f"differ from the argmax over keys{wrong}")
    return "picks the most-attended key for every head and token"


@exercise("02.4", title="most-attended token per head",
          hint="each head's weights form a (query, key) table per layer; for every query position the answer is "
               "the key position with the largest weight",
          hint2="index the layer and the first batch item, then Tensor.argmax over the key dimension (the last "
                "one)",
          reference=["labsupport.checks.lab02:top_attended_reference"], judge=_judge_top)
def drive_top_attended(t: Trace, top_attended: Callable) -> None:
    for n_layers, n_heads, T, layer, attentions in TOP_CASES:
        got = top_attended(tuple(a.clone() for a in attentions), layer)
        if type(got) is not torch.Tensor:
            got = torch.as_tensor(got)
        t.record(_top_label(n_layers, n_heads, T, layer), got)
