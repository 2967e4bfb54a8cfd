"""A GPT-2 style decoder-only transformer in one readable file (after Karpathy's minGPT).

    config = GPT.get_default_config()
    config.model_type = "gpt-nano"          # or model_type=None plus n_layer / n_head / n_embd
    config.vocab_size, config.block_size = 8, 11
    model = GPT(config)                     # prints "number of parameters: 0.09M"
    logits, loss = model(idx, targets)      # idx, targets: (B, T) token ids

`GPT.from_pretrained(dir_or_hub_id)` copies GPT-2 weights into it; by asset name: `assets.load_model("gpt2", GPT)`.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from labsupport.attention import CausalSelfAttention
from labsupport.config import CfgNode
from labsupport.core import IGNORE_INDEX, count_parameters, eval_mode  # IGNORE_INDEX: targets left out of the loss
from labsupport.generate import top_k_filter
from labsupport.precision import fp32_logits

PRESETS: dict[str, dict[str, int]] = {
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48),
    "gpt-micro": dict(n_layer=4, n_head=4, n_embd=128),
    "gpt-mini": dict(n_layer=6, n_head=6, n_embd=192),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
}
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")


class MLP(nn.Module):
    """Position-wise feed-forward: expand 4x, GELU, project back."""

    def __init__(self, config: CfgNode):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class BlockLayers(nn.Module):
    """The layers of a transformer block; `Block` adds what they compute (Lab 04 writes its own forward)."""

    def __init__(self, config: CfgNode):
        super().__init__()
        attention_cls = config.attention_cls or CausalSelfAttention
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = attention_cls(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)


class Block(BlockLayers):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # tokens exchange information
        x = x + self.mlp(self.ln_2(x))  # each token thinks on its own
        return x


class GPTLayers(nn.Module):
    """The GPT's modules, their initialisation, its optimizer and pretrained weights; `GPT` adds the forward
    pass and generation. Lab 04 subclasses this (and `BlockLayers`) and writes the forward passes itself;
    `block_cls` is the class the blocks are built from.
    """

    block_cls: type[nn.Module] = Block

    @staticmethod
    def get_default_config() -> CfgNode:
        C = CfgNode()
        # either model_type names a preset (see PRESETS) or n_layer, n_head, n_embd are all given
        C.model_type = "gpt"
        C.n_layer = None
        C.n_head = None
        C.n_embd = None
        # these must be set by the caller
        C.vocab_size = None
        C.block_size = None  # the longest context the model can see
        C.embd_pdrop = 0.1
        C.resid_pdrop = 0.1
        C.attn_pdrop = 0.1
        C.attention_cls = None  # None: labsupport.attention.CausalSelfAttention; any class(config) works
        C.tie_weights = False  # True: lm_head reuses wte's matrix, as GPT-2 does (from_pretrained sets it)
        return C

    def __init__(self, config: CfgNode):
        super().__init__()
        config = _resolve_config(config)
        self.config = config
        self.block_size = config.block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
            wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embeddings
            drop=nn.Dropout(config.embd_pdrop),
            h=nn.ModuleList([self.block_cls(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:  # one (vocab_size, C) matrix embeds tokens and scores them
            self.lm_head.weight = self.transformer.wte.weight

        self.apply(self._init_weights)
        # GPT-2: scale the init of the projections that add into the residual stream by 1/sqrt(2 n_layer)
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.c_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        print(f"number of parameters: {self.num_parameters() / 1e6:.2f}M")

    def num_parameters(self) -> int:
        """Every parameter once (labsupport.core.count_parameters): lm_head counts unless it is tied to wte."""
        return count_parameters(self)[1]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------------------------------ pretrained

    @classmethod
    def from_pretrained(cls, dir_or_hub_id: str | os.PathLike, revision: str | None = None,
                        **overrides) -> GPTLayers:
        """A GPT with Hugging Face GPT-2 weights from a saved model directory or a hub id (at `revision`).

        By asset name, with the source the profile picks: `labsupport.assets.load_model("gpt2", GPT)`.
        `overrides` change non-architecture settings, e.g. attention_cls=MyAttention or attn_pdrop=0.0.
        """
        from transformers import GPT2LMHeadModel  # heavy (~3 s): only loading weights needs it

        source = str(dir_or_hub_id)
        try:
            hf = GPT2LMHeadModel.from_pretrained(source, revision=revision)
        except OSError as err:  # one line, and the way to load by asset name
            raise OSError(f"no GPT-2 checkpoint at {source!r} ({str(err).strip().splitlines()[0]}); to load a lab "
                          f"asset by name use labsupport.assets.load_model({source!r}, GPT)") from None
        hc = hf.config
        variant = dict(activation_function=hc.activation_function, n_inner=hc.n_inner or 4 * hc.n_embd,
                       scale_attn_weights=hc.scale_attn_weights,
                       scale_attn_by_inverse_layer_idx=hc.scale_attn_by_inverse_layer_idx)
        if variant != dict(activation_function="gelu_new", n_inner=4 * hc.n_embd, scale_attn_weights=True,
                           scale_attn_by_inverse_layer_idx=False):
            raise ValueError(f"unsupported GPT-2 variant in {source}: {variant}; this GPT is the original GPT-2")
        bad = sorted(set(overrides) & set(ARCH_KEYS + ("model_type",)))
        if bad:
            raise ValueError(f"cannot override {', '.join(bad)}: they are fixed by the pretrained weights")

        config = cls.get_default_config()
        config.merge_from_dict(dict(
            model_type=None, n_layer=hc.n_layer, n_head=hc.n_head, n_embd=hc.n_embd, vocab_size=hc.vocab_size,
            block_size=hc.n_positions, embd_pdrop=hc.embd_pdrop, resid_pdrop=hc.resid_pdrop, attn_pdrop=hc.attn_pdrop,
            tie_weights=hc.tie_word_embeddings,  # GPT-2: 124M parameters, not 163M with a second vocabulary matrix
        ))
        config.merge_from_dict(overrides)
        model = cls(config)
        model.load_state_dict(_convert_hf_gpt2(hf.state_dict(), hc.n_layer, hc.n_embd))
        return model


class GPT(GPTLayers):
    """Token + position embeddings -> n_layer blocks -> final LayerNorm -> linear head over the vocabulary."""

    # ------------------------------------------------------------------------------------------ forward

    def forward_hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> final hidden states (B, T, C), after the last LayerNorm.

        Add your own head on top (e.g. a classifier). Attention is causal, so with right padding the
        state at each sequence's last real token has not seen the padding.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be (B, T) token ids, got shape {tuple(idx.shape)}")
        B, T = idx.size()
        if T > self.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.block_size}; crop the input")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) -> (logits (B, T, vocab_size), loss or None).

        targets: (B, T) next-token ids; positions whose target is IGNORE_INDEX (-100) are left out of
        the mean cross-entropy (use it for padding or for prompt tokens you do not want to train on).
        """
        logits = fp32_logits(self.lm_head, self.forward_hidden(idx))  # (B, T, vocab_size), float32 under autocast
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets {tuple(targets.shape)} must have the same shape as idx {tuple(idx.shape)}")
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        return logits, loss

    # ------------------------------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        do_sample: bool = False,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens tokens -> (B, T + max_new_tokens).

        Greedy (argmax) by default; with do_sample=True draws from softmax(logits / temperature),
        restricted to the top_k most likely tokens when top_k is given. Runs with dropout off.
        """
        if do_sample and temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
        with eval_mode(self):
            for _ in range(max_new_tokens):
                idx_cond = idx[:, -self.block_size:]  # the model sees at most block_size tokens
                logits, _ = self(idx_cond)
                logits = logits[:, -1, :]  # (B, vocab_size): only the last position predicts the next token
                if not do_sample:
                    idx_next = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        logits = top_k_filter(logits, top_k)  # only the top_k most likely tokens stay possible
                    probs = F.softmax(logits, dim=-1)
                    idx_next = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
                idx = torch.cat((idx, idx_next), dim=1)
        return idx


def _resolve_config(config: CfgNode) -> CfgNode:
    """Check the config and fill n_layer / n_head / n_embd from model_type; returns a filled-in copy."""
    config = GPTLayers.get_default_config().merge_from_dict(config.to_dict())
    for key in ("vocab_size", "block_size"):
        if getattr(config, key, None) is None:
            raise ValueError(f"config.{key} must be set (got None)")
    dims = [config.n_layer, config.n_head, config.n_embd]
    if all(d is not None for d in dims):
        if config.model_type in PRESETS:
            raise ValueError(f"set either model_type ({config.model_type!r}) or n_layer/n_head/n_embd, not both")
    elif any(d is not None for d in dims):
        raise ValueError(f"give all of n_layer, n_head, n_embd (got {dims}) or none and a preset model_type")
    elif config.model_type in PRESETS:
        config.merge_from_dict(PRESETS[config.model_type])
    else:
        raise ValueError(f"unknown model_type {config.model_type!r}: choose one of {', '.join(PRESETS)} "
                         "or set n_layer, n_head and n_embd")
    return config


def _convert_hf_gpt2(sd: dict[str, torch.Tensor], n_layer: int, n_embd: int) -> dict[str, torch.Tensor]:
    """Rename HF GPT2LMHeadModel weights to ours: Conv1D (in, out) -> Linear (out, in); split c_attn."""
    out = {k: sd[k] for k in ("transformer.wte.weight", "transformer.wpe.weight",
                              "transformer.ln_f.weight", "transformer.ln_f.bias")}
    out["lm_head.weight"] = sd.get("lm_head.weight", sd["transformer.wte.weight"])  # tied in GPT-2
    for i in range(n_layer):
        src, dst = f"transformer.h.{i}.", f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[dst + f"{ln}.weight"] = sd[src + f"{ln}.weight"]
            out[dst + f"{ln}.bias"] = sd[src + f"{ln}.bias"]
        # c_attn holds [query | key | value] along its output dimension
        w_qkv = sd[src + "attn.c_attn.weight"].t()  # (3C, C)
        b_qkv = sd[src + "attn.c_attn.bias"]  # (3C,)
        for j, name in enumerate(("query", "key", "value")):
            out[dst + f"attn.{name}.weight"] = w_qkv[j * n_embd:(j + 1) * n_embd].contiguous()
            out[dst + f"attn.{name}.bias"] = b_qkv[j * n_embd:(j + 1) * n_embd].clone()
        out[dst + "attn.proj.weight"] = sd[src + "attn.c_proj.weight"].t().contiguous()
        out[dst + "attn.proj.bias"] = sd[src + "attn.c_proj.bias"]
        out[dst + "mlp.c_fc.weight"] = sd[src + "mlp.c_fc.weight"].t().contiguous()
        out[dst + "mlp.c_fc.bias"] = sd[src + "mlp.c_fc.bias"]
        out[dst + "mlp.c_proj.weight"] = sd[src + "mlp.c_proj.weight"].t().contiguous()
        out[dst + "mlp.c_proj.bias"] = sd[src + "mlp.c_proj.bias"]
    return out
