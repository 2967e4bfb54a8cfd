"""Autoregressive text generation for any causal LM: the lab GPT (forward -> (logits, loss)) or a HF model.

The decoding rules are small pure functions on a (B, V) logits tensor, so the Lab 04 exercises can be
checked against them: `apply_temperature`, `top_k_filter`, `top_p_filter`, and `sample_next` which chains
them (suppress ids -> temperature -> top-k -> top-p -> sample; temperature 0 = greedy argmax).
`generate` runs the loop; `generation_table` shows the top candidates of each step as a DataFrame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from labsupport.core import eval_mode


def _check_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T: T < 1 sharpens the distribution, T > 1 flattens it. T = 0 (greedy) is `sample_next`'s job."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 to rescale logits, got {temperature} "
                         f"(temperature 0 means greedy decoding: use sample_next or generate)")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf (ties with the k-th largest are kept).

    logits (..., V) -> same shape, a new tensor. k >= V keeps everything.
    """
    _check_args(1.0, k, None)
    k = min(int(k), logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most probable tokens until their total probability reaches p; -inf the rest.

    A token is kept iff the probability mass of tokens strictly more likely than it is < p, so the top
    token is always kept and tokens tied with the last kept one are kept too. p = 1 keeps everything.
    logits (..., V) -> same shape, a new tensor.
    """
    _check_args(1.0, None, p)
    if p >= 1:
        return logits.clone()
    probs = F.softmax(logits.float(), dim=-1)
    sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)  # (..., V)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the tokens ranked above each one
    n_keep = (before < p).sum(dim=-1, keepdim=True)  # (..., 1), >= 1 because before[0] = 0
    smallest_kept = sorted_probs.gather(-1, n_keep - 1)  # (..., 1)
    return logits.masked_fill(probs < smallest_kept, float("-inf"))


def suppress(logits: torch.Tensor, suppress_ids: Sequence[int] | None) -> torch.Tensor:
    """Mask the logits of `suppress_ids` to -inf, so those tokens can never be chosen."""
    if not suppress_ids:
        return logits
    ids = torch.as_tensor(list(suppress_ids), dtype=torch.long, device=logits.device)
    V = logits.size(-1)
    if ids.min() < 0 or ids.max() >= V:
        raise ValueError(f"suppress_ids must be token ids in 0..{V - 1}, got {sorted(set(ids.tolist()))}")
    if ids.unique().numel() >= V:
        raise ValueError("suppress_ids covers the whole vocabulary: nothing left to generate")
    logits = logits.clone()
    logits[..., ids] = float("-inf")
    return logits


def next_token_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, suppress_ids: Sequence[int] | None = None) -> torch.Tensor:
    """The logits `sample_next` samples from: suppress -> temperature -> top-k -> top-p (float32)."""
    _check_args(temperature, top_k, top_p)
    logits = suppress(logits.float(), suppress_ids)
    if temperature > 0:
        logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, suppress_ids: Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One next token per row: logits (B, V) -> ids (B,) (or (V,) -> a 0-d tensor).

    temperature 0 is greedy (argmax, top-k/top-p are then irrelevant); otherwise sample from
    softmax of the filtered logits, with `generator` for reproducible draws.
    """
    logits = next_token_logits(logits, temperature, top_k, top_p, suppress_ids)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.size(-1))  # multinomial wants (B, V)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


# ---------------------------------------------------------------------------------------------- the model loop


def block_size(model: torch.nn.Module) -> int | None:
    """The longest context `model` accepts, if it says: lab GPT (`block_size`) or HF config positions."""
    for owner in (model, getattr(model, "config", None)):
        for name in ("block_size", "n_positions", "max_position_embeddings"):
            value = getattr(owner, name, None)
            if isinstance(value, int) and value > 0:
                return value
    get = getattr(model, "get_block_size", None)
    return get() if callable(get) else None


def _is_hf(model: torch.nn.Module) -> bool:
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def last_logits(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Logits for the token after `idx`: idx (B, T) -> (B, V). Accepts (logits, loss), `.logits`, or a tensor."""
    out = model(input_ids=idx, use_cache=False) if _is_hf(model) else model(idx)
    if isinstance(out, (tuple, list)):
        out = out[0]
    elif not isinstance(out, torch.Tensor):
        out = out.logits
    return out[:, -1, :]  # (B, T, V) -> (B, V)


@dataclass
class GenerationDetails:
    """Per generated step, the model's next-token distribution (softmax of the logits at temperature 1,
    suppressed ids removed; not the temperature/top-k/top-p-adjusted one the token was drawn from).

    token_probs (B, S): probability of the chosen token. top_ids / top_probs (B, S, top_n): the top_n
    candidates, most likely first. Steps after a row emitted `eos_id` are padding: NaN probabilities.
    """

    token_ids: torch.Tensor  # (B, S)
    token_probs: torch.Tensor  # (B, S)
    top_ids: torch.Tensor  # (B, S, top_n)
    top_probs: torch.Tensor  # (B, S, top_n)


def generate(model: torch.nn.Module, idx: torch.Tensor | Sequence[int], max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, eos_id: int | None = None, suppress_ids: Sequence[int] | None = None,
             return_details: bool = False, top_n: int = 6) -> torch.Tensor | tuple[torch.Tensor, GenerationDetails]:
    """Extend the prompt(s) `idx` (B, T) (or (T,)) by up to `max_new_tokens` tokens -> (B, T + S).

    Greedy when temperature == 0, else sampling (temperature, top-k, top-p). `seed` seeds a private
    torch.Generator: same seed -> same output, and the global RNG is left alone (seed=None uses it).
    The context is cropped to the model's block size. With `eos_id`, a row stops at its first eos and is
    padded with eos while other rows continue; the loop ends when every row has finished (S may be <
    max_new_tokens). Runs on the model's device under torch.inference_mode, in eval mode (restored
    afterwards); the returned tensors are ordinary ones (usable later in training code).
    """
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens}")
    _check_args(temperature, top_k, top_p)
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    idx = torch.as_tensor(idx, dtype=torch.long, device=device)
    squeeze = idx.dim() == 1
    if squeeze:
        idx = idx.unsqueeze(0)  # (T,) -> (1, T)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be a non-empty prompt of shape (B, T) or (T,), got {tuple(idx.shape)} "
                         f"(start from a <bos> or other start token)")
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    with eval_mode(model), torch.inference_mode():
        idx, steps = _loop(model, idx, int(max_new_tokens), temperature, top_k, top_p, generator, eos_id,
                           suppress_ids, top_n if return_details else 0)
    idx = idx.clone()  # cloned outside inference mode: an ordinary tensor that training code can use
    out = idx[0] if squeeze else idx
    if not return_details:
        return out
    if steps:
        ids, chosen, top_ids, top_probs = (torch.stack(t, dim=1).clone() for t in zip(*steps))
    else:  # max_new_tokens == 0
        B = idx.size(0)
        ids, chosen = torch.empty(B, 0, dtype=torch.long, device=device), torch.empty(B, 0, device=device)
        top_ids = torch.empty(B, 0, top_n, dtype=torch.long, device=device)
        top_probs = torch.empty(B, 0, top_n, device=device)
    return out, GenerationDetails(ids, chosen, top_ids, top_probs)


def _loop(model, idx, max_new_tokens, temperature, top_k, top_p, generator, eos_id, suppress_ids, top_n):
    """generate's decoding loop: idx (B, T) -> (B, T + S), plus per-step details when top_n > 0."""
    limit = block_size(model)
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # rows that emitted eos
    steps: list[tuple[torch.Tensor, ...]] = []
    nan = float("nan")
    for _ in range(max_new_tokens):
        context = idx if limit is None or idx.size(1) <= limit else idx[:, -limit:]
        logits = last_logits(model, context).float()  # (B, V)
        nxt = sample_next(logits, temperature, top_k, top_p, suppress_ids, generator)  # (B,)
        if eos_id is not None:
            nxt = nxt.masked_fill(done, eos_id)
        if top_n:
            probs = F.softmax(suppress(logits, suppress_ids), dim=-1)  # (B, V)
            top = probs.topk(min(top_n, probs.size(-1)), dim=-1)  # (B, n)
            chosen = probs.gather(1, nxt[:, None])[:, 0]  # (B,)
            steps.append((nxt, chosen.masked_fill(done, nan), top.indices, top.values.masked_fill(done[:, None], nan)))
        idx = torch.cat([idx, nxt[:, None]], dim=1)  # (B, T + 1)
        if eos_id is not None:
            done = done | (nxt == eos_id)
            if bool(done.all()):  # one host sync per step, only when eos_id is given
                break
    return idx, steps

# ---------------------------------------------------------------------------------------------- display


def top_candidates(step_logits: torch.Tensor, k: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-k table of a generation: step_logits (S, V) -> (ids, probs, cumulative), each (S, k).

    Probabilities are over the whole vocabulary (softmax at temperature 1), most likely first; the cumulative
    column says how much of each step's distribution the k candidates cover. (Lab 04's exercise 04.5.)
    """
    top = F.softmax(step_logits.float(), dim=-1).topk(k, dim=-1)
    return top.indices, top.values, top.values.cumsum(dim=-1)


def as_decode(tokenizer_or_decode: Any) -> Callable[[list[int]], str]:
    """A function ids -> str from a HF tokenizer or a vocabulary (their `.decode`), or a callable itself."""
    decode = getattr(tokenizer_or_decode, "decode", None)
    if callable(decode):
        return decode
    if callable(tokenizer_or_decode):
        return tokenizer_or_decode
    raise TypeError(f"expected a tokenizer/vocabulary with .decode or a callable ids -> str, "
                    f"got {type(tokenizer_or_decode).__name__}")


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} [{seen[label]}]")
    return out


def generation_table(model: torch.nn.Module, tokenizer_or_decode: Any, prompt_ids: torch.Tensor | Sequence[int],
                     max_new_tokens: int, top_n: int = 6, **gen_kwargs: Any):
    """A DataFrame with one column per generated token (labelled by the chosen token, made unique) and
    `top_n` rows: the model's most likely candidates at that step as ``"token (p=0.123)"``.

    `gen_kwargs` go to `generate` (temperature, top_k, top_p, seed, eos_id, suppress_ids).
    """
    import pandas as pd  # heavy (~1 s): only this display helper needs it

    decode = as_decode(tokenizer_or_decode)
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long)
    if prompt.dim() == 2 and prompt.size(0) == 1:
        prompt = prompt[0]
    if prompt.dim() != 1:
        raise ValueError(f"generation_table takes one prompt ((T,) or (1, T)), got shape {tuple(prompt.shape)}")
    _, details = generate(model, prompt, max_new_tokens, return_details=True, top_n=top_n, **gen_kwargs)
    columns, cells = [], []
    for s in range(details.token_ids.size(1)):
        if torch.isnan(details.token_probs[0, s]):  # finished at eos
            break
        columns.append(decode([int(details.token_ids[0, s])]))
        cells.append([f"{decode([int(i)])} (p={float(p):.3f})"
                      for i, p in zip(details.top_ids[0, s], details.top_probs[0, s])])
    index = [f"top {r + 1}" for r in range(details.top_ids.size(-1))]
    return pd.DataFrame({c: col for c, col in zip(_unique(columns), cells)}, index=index)


__all__ = [
    "GenerationDetails", "apply_temperature", "as_decode", "block_size", "generate", "generation_table",
    "last_logits", "next_token_logits", "sample_next", "suppress", "top_candidates", "top_k_filter", "top_p_filter",
]
