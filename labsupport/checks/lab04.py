"""Self-checks for Lab 04 (text generation).

04.1: the student's `Block` / `GPT` subclasses get the reference weights and must give the reference logits and
loss, causally. 04.2 / 04.3: `apply_temperature` and `top_k_filter` are compared with `labsupport.generate`'s on
fixed random logits and edge cases, then used inside a sampling step whose draws must equal `sample_next`'s
for the same seed. 04.4: the student's generation loop must reproduce `labsupport.generate.generate` (ids and
chosen-token probabilities) on a tiny lab GPT, greedy and sampled, with EOS and a prompt longer than the
block size. 04.5: the top-k candidate table is compared with softmax + topk + cumsum.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import torch
import torch.nn.functional as F

from labsupport import gpt as lab_gpt
from labsupport.check import Records, Trace, WrongAnswer, compare, exercise, expect_close
from labsupport.config import CfgNode
from labsupport.core import IGNORE_INDEX
from labsupport.generate import apply_temperature, generate, top_k_filter

NEG_INF = float("-inf")


def random_logits(rows: int = 8, vocab: int = 20, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(rows, vocab, generator=g)  # (rows, vocab)


def tie_logits() -> torch.Tensor:
    """Rows with ties at the k-th largest value (k = 2, 3) and a row that already holds -inf."""
    return torch.tensor([
        [3.0, 1.0, 2.0, 2.0, 0.0, -1.0],  # top-2: 3, then 2 twice -> both 2s stay
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # all equal -> everything stays for any k
        [0.5, NEG_INF, 2.0, NEG_INF, 1.0, 0.5],  # already masked tokens stay masked
    ])


def _sampling_step(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator,
                   temp_fn: Callable = apply_temperature, topk_fn: Callable = top_k_filter) -> torch.Tensor:
    """The notebook's sampling step with pluggable temperature / top-k functions: (B, V) -> (B,)."""
    logits = temp_fn(logits, temperature)
    if top_k is not None:
        logits = topk_fn(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def _judge(what_cases: str) -> Callable[..., str]:
    """Judge: each output matches the reference's (-inf where it has -inf, values to 1e-5), the input is
    unchanged, and a sampling step built on the function draws the same tokens as sample_next."""

    def judge(got: Records, want: Records) -> str:
        for label, w in want.items_:
            g = got.get(label)
            what, _, part = label.rpartition(" | ")
            if g is None:
                raise WrongAnswer(f"{what}: no result recorded")
            if part == "input afterwards":
                if type(g) is not torch.Tensor or not torch.equal(g, w):
                    raise WrongAnswer(f"{what} changed its input tensor in place; return a new tensor instead (e.g. "
                                      "logits / t or logits.masked_fill(...), not logits /= t or logits[...] = ...)")
            elif part == "draws":
                if type(g) is not torch.Tensor or g.shape != w.shape or not torch.equal(g, w):
                    n = int((g != w).sum()) if type(g) is torch.Tensor and g.shape == w.shape else len(w)
                    raise WrongAnswer(f"{what}: a sampling step built on your function drew different tokens than "
                                      f"labsupport.generate.sample_next with the same seed in {n} of {len(w)} rows")
            else:
                if type(g) is not torch.Tensor:
                    raise WrongAnswer(f"{what} must return a tensor")
                if g.shape != w.shape:
                    raise WrongAnswer(f"{what}: expected shape {tuple(w.shape)} (same as the logits), "
                                      f"got {tuple(g.shape)}")
                expect_close(g.reshape(-1, w.size(-1)), w.reshape(-1, w.size(-1)), what, rtol=1e-5, atol=1e-6)
        return what_cases

    return judge


def _record_call(t: Trace, fn: Callable, logits: torch.Tensor, arg: float | int, what: str) -> None:
    inp = logits.clone()
    out = fn(inp, arg)
    t.record(f"{what} | output", out.detach() if type(out) is torch.Tensor else out)
    t.record(f"{what} | input afterwards", inp)


def _record_draws(t: Trace, what: str, temperature: float, top_k: int | None, **fns: Callable) -> None:
    logits = random_logits(rows=256, vocab=50, seed=7)
    t.record(f"{what} | draws", _sampling_step(logits.clone(), temperature, top_k, torch.Generator().manual_seed(0),
                                               **fns))


# ---------------------------------------------------------------------------------------------- checks

TEMP_CASES = [(random_logits(seed=1), t) for t in (1.0, 0.3, 1.5, 2, 0.01, 100.0)]
TEMP_CASES += [(random_logits(rows=1, vocab=7, seed=2)[0], 0.5), (tie_logits(), 0.7)]  # one row (V,); -inf kept
_L = random_logits(seed=3)  # (8, 20)
TOPK_CASES = [(_L, k) for k in (1, 3, 10, _L.size(-1) - 1, _L.size(-1), _L.size(-1) + 5)]  # k >= V keeps all
TOPK_CASES += [(tie_logits(), k) for k in (1, 2, 3, 5)]  # ties with the k-th largest are kept
TOPK_CASES += [(random_logits(rows=1, vocab=5, seed=4), 2)]


@exercise("04.2", title="temperature scaling",
          hint="dividing every logit by T multiplies each log-odds by 1/T; return a new tensor, leave logits untouched",
          hint2="one arithmetic operator on the tensor; not an in-place one such as /=",
          reference=["labsupport.generate:apply_temperature"],
          judge=_judge(f"{len(TEMP_CASES)} logit tensors scaled correctly; sampled tokens match sample_next at "
                       "T = 0.3, 1.0, 1.5"))
def drive_temperature(t: Trace, apply_temperature: Callable) -> None:
    for logits, temp in TEMP_CASES:
        _record_call(t, apply_temperature, logits, temp,
                     f"apply_temperature(logits of shape {tuple(logits.shape)}, temperature={temp})")
    for temp in (0.3, 1.0, 1.5):
        _record_draws(t, f"temperature={temp}", temp, None, temp_fn=apply_temperature)


@exercise("04.3", title="top-k filtering",
          hint="each row has its own threshold, its k-th largest logit; everything below it gets probability 0, "
               "i.e. the logit -inf (ties with the threshold stay)",
          hint2="torch.topk(..., dim=-1).values gives each row's largest values in order; Tensor.masked_fill "
                "returns a new tensor; cap k at the vocabulary size",
          reference=["labsupport.generate:top_k_filter"],
          judge=_judge(f"{len(TOPK_CASES)} cases filtered correctly (ties, k >= V, -inf entries); sampled tokens "
                       "match sample_next"))
def drive_top_k(t: Trace, top_k_filter: Callable) -> None:
    for lg, k in TOPK_CASES:
        _record_call(t, top_k_filter, lg, k, f"top_k_filter(logits of shape {tuple(lg.shape)}, k={k})")
    for temp, k in ((1.0, 5), (0.7, 1), (1.5, 40)):
        _record_draws(t, f"temperature={temp}, top_k={k}", temp, k, topk_fn=top_k_filter)


# ---------------------------------------------------------------------------------------------- 04.1 the model


def tiny_config(block_size: int = 8, vocab_size: int = 11, n_layer: int = 2) -> CfgNode:
    """A small lab GPT config with dropout off, so two models with the same weights compute the same thing."""
    config = lab_gpt.GPTLayers.get_default_config()
    config.merge_from_dict(dict(model_type=None, n_layer=n_layer, n_head=2, n_embd=16, vocab_size=vocab_size,
                                block_size=block_size, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    return config


def tiny_gpt(seed: int = 0, cls: type = lab_gpt.GPT, **kwargs) -> torch.nn.Module:
    """A seeded lab GPT (or subclass), built quietly (GPT prints its parameter count)."""
    with contextlib.redirect_stdout(io.StringIO()), torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(tiny_config(**kwargs))
    return model.eval()


FORWARD_G = torch.Generator().manual_seed(4)
BLOCK_X = torch.randn(3, 5, 16, generator=FORWARD_G)  # (B, T, C)
IDX = torch.randint(0, 11, (4, 6), generator=FORWARD_G)  # T = 6 < block_size = 8
TARGETS = torch.randint(0, 11, (4, 6), generator=FORWARD_G)
TARGETS[0, :3] = IGNORE_INDEX  # e.g. prompt tokens or padding
TARGETS[2, 4:] = IGNORE_INDEX
CAUSAL_TS = (0, 2, 4)
CHANGED = {t: IDX.clone().index_put_((torch.arange(4), torch.full((4,), t + 1)), (IDX[:, t + 1] + 1) % 11)
           for t in CAUSAL_TS}  # token t+1 changed: outputs at positions <= t must not move


def _build(cls: type, seed: int) -> torch.nn.Module:
    """cls(tiny_config()) with seeded weights, quietly, in eval mode (dropout off)."""
    with contextlib.redirect_stdout(io.StringIO()), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(tiny_config()).eval()


def _pair_out(out: object, what: str) -> tuple[object, object]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"{what} must return a pair (logits, loss), got {type(out).__name__}")
    return out[0], out[1]


def _judge_forward(got: Records, want: Records, rtol: float = 1e-5, atol: float = 1e-5, **_: object) -> str:
    for label, w in want.items():
        g = got.get(label)
        if label.startswith("GPT.forward(idx, targets) loss") and isinstance(g, torch.Tensor) and g.dim() == 0 \
                and isinstance(w, torch.Tensor):
            counted = got.get("the same loss if -100 targets counted as token 0")
            if counted is not None and torch.allclose(g, counted, atol=1e-4) and not torch.allclose(g, w, atol=1e-4):
                raise WrongAnswer(f"{label}: expected {w.item():.5f}, got {g.item():.5f}: it looks like targets "
                                  f"equal to -100 were counted; pass ignore_index")
    message = compare(got, want, rtol=rtol, atol=atol)
    return ("Block matches the reference block; GPT gives the reference logits (1e-5) and loss with ignored "
            f"targets, and no position sees the future ({message})")


@exercise("04.1", title="the GPT forward pass",
          hint="a block adds each sub-layer's output to its input (a residual), and normalises only what goes "
               "into the sub-layer (pre-LayerNorm); the model adds a token and a position vector, runs the blocks, "
               "normalises once more and maps each position to vocabulary scores",
          hint2="self.ln_1 / self.attn / self.ln_2 / self.mlp in a block; self.transformer.wte, .wpe, .drop, .h, "
                ".ln_f and self.lm_head in the model; torch.arange(T) for the positions; "
                "F.cross_entropy(..., ignore_index=IGNORE_INDEX) on (B*T, V) logits",
          reference=["labsupport.gpt:Block", "labsupport.gpt:GPT"], judge=_judge_forward)
def drive_gpt_forward(t: Trace, Block: type, GPT: type) -> None:
    for cls, name, base in ((Block, "Block", lab_gpt.BlockLayers), (GPT, "GPT", lab_gpt.GPTLayers)):
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise WrongAnswer(f"pass your {name} class itself; it subclasses labsupport.gpt.{base.__name__} "
                              f"(labsupport.check('04.1', Block, GPT))")
    with torch.no_grad():
        t.record("Block.forward(x) on x of shape (3, 5, 16)", _build(Block, 0)(BLOCK_X.clone()))
        model = _build(GPT, 1)  # its blocks come from its block_cls
        logits, loss = _pair_out(model(IDX.clone()), "GPT.forward(idx)")
        t.record("GPT.forward(idx) logits", logits)
        t.record("GPT.forward(idx) without targets returns loss None", loss is None)
        logits2, loss2 = _pair_out(model(IDX.clone(), TARGETS.clone()), "GPT.forward(idx, targets)")
        t.record("GPT.forward(idx, targets) loss (targets -100 ignored)", loss2)
        if isinstance(logits2, torch.Tensor) and logits2.shape == (4, 6, 11):
            t.record("the same loss if -100 targets counted as token 0",
                     F.cross_entropy(logits2.flatten(0, 1), TARGETS.clamp_min(0).flatten()))
        for t_ in CAUSAL_TS:
            out, _ = _pair_out(model(CHANGED[t_].clone()), "GPT.forward(idx)")
            t.record(f"logits at positions <= {t_} after changing the token at position {t_ + 1}",
                     out[:, : t_ + 1] if isinstance(out, torch.Tensor) else out)


# ---------------------------------------------------------------------------------------------- 04.4 generation


def reference_generate(model: torch.nn.Module, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                       top_k: int | None = None, greedy: bool = False, eos_id: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 04.4's contract on top of `labsupport.generate.generate` (the graded reference)."""
    seed = None if generator is None else generator.initial_seed()
    out, details = generate(model, ids, max_new_tokens, temperature=0 if greedy else temperature, top_k=top_k,
                            seed=seed, eos_id=eos_id, return_details=True)
    return out, details.token_probs


def _make_generation_inputs() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, int]:
    """A tiny GPT with block_size 6, a short and a too-long prompt, and an eos id the greedy run produces."""
    model = tiny_gpt(seed=5, block_size=6, vocab_size=13)
    g = torch.Generator().manual_seed(6)
    short_prompt = torch.randint(0, 13, (2, 3), generator=g)
    long_prompt = torch.randint(0, 13, (3, 9), generator=g)  # longer than block_size = 6: must be cropped
    eos = int(generate(model, short_prompt, 10, temperature=0)[0, short_prompt.size(1) + 2])
    return model, short_prompt, long_prompt, eos


# Built at import, before the grader replaces `generate` (the reference) by a tripwire for exercise 04.4
GENERATION_INPUTS = _make_generation_inputs()


def _generation_cases() -> list[tuple[str, torch.Tensor, int, dict]]:
    model, short_prompt, long_prompt, eos = GENERATION_INPUTS
    cases = [("greedy, 10 new tokens", short_prompt, 10, dict(greedy=True)),
             ("greedy, a prompt longer than the block size", long_prompt, 4, dict(greedy=True))]
    cases += [(f"sampling at temperature {t}, top_k={k}, seed 7", long_prompt, 8, dict(temperature=t, top_k=k))
              for t, k in ((1.0, None), (0.7, 4), (1.5, 2))]
    cases += [(f"greedy with eos_id={eos}", short_prompt, 10, dict(greedy=True, eos_id=eos)),
              (f"sampling at temperature 1.2 with eos_id={eos}, seed 7", long_prompt, 12,
               dict(temperature=1.2, eos_id=eos))]
    return cases


@exercise("04.4", title="the generation loop",
          hint="each step: keep only the last block_size tokens, run the model, read the scores at the LAST "
               "position, turn them into a distribution (your temperature and top-k), choose a token, append it; "
               "a row that produced eos keeps getting eos, and the loop ends when every row has",
          hint2="block_size(model) from labsupport.generate; model(context)[0][:, -1, :]; F.softmax; argmax or "
                "torch.multinomial(probs, 1, generator=generator); probs.gather(1, ...); torch.cat(..., dim=1)",
          reference=["labsupport.checks.lab04:reference_generate"], options={"atol": 1e-5, "rtol": 1e-4})
def drive_generate(t: Trace, generate: Callable) -> None:
    model, *_ = GENERATION_INPUTS
    for what, prompt, n, kwargs in _generation_cases():
        kwargs = dict(temperature=1.0, top_k=None, greedy=False, eos_id=None) | kwargs
        out = generate(model, prompt.clone(), n, generator=torch.Generator().manual_seed(7), **kwargs)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise WrongAnswer(f"{what}: generate must return a pair (ids, probs), got {type(out).__name__}")
        ids, probs = out
        t.record(f"{what}: ids (prompt + new tokens)", ids)
        if isinstance(ids, torch.Tensor) and isinstance(probs, torch.Tensor) and kwargs["eos_id"] is not None \
                and probs.dim() == 2 and ids.dim() == 2 and probs.size(1) == ids.size(1) - prompt.size(1):
            new = ids[:, prompt.size(1):]
            after = (new == kwargs["eos_id"]).long().cumsum(dim=1) - (new == kwargs["eos_id"]).long() > 0
            probs = probs.float().masked_fill(after, 0.0)  # steps after a row's eos: any value is fine
        t.record(f"{what}: probability of each chosen token (softmax of the raw logits)", probs)


# ---------------------------------------------------------------------------------------------- 04.5 candidates


CANDIDATE_G = torch.Generator().manual_seed(9)
CANDIDATE_CASES = [(k, scale * torch.randn(steps, vocab, generator=CANDIDATE_G))
                   for steps, vocab, k, scale in ((5, 30, 6, 3.0), (1, 8, 3, 1.0), (4, 6, 6, 5.0))]


@exercise("04.5", title="top-k candidate table",
          hint="each step's scores become a probability distribution; the table lists the k most likely tokens, most "
               "likely first, with their probabilities and the running total of those probabilities",
          hint2="F.softmax(step_logits, dim=-1), then .topk(k, dim=-1) (values and indices) and .cumsum(dim=-1)",
          reference=["labsupport.generate:top_candidates"])
def drive_top_candidates(t: Trace, top_candidates: Callable) -> None:
    for k, logits in CANDIDATE_CASES:
        out = top_candidates(logits.clone(), k=k)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise WrongAnswer("top_candidates must return three tensors: (ids, probs, cumulative), each (S, k)")
        what = f"top_candidates(logits of shape {tuple(logits.shape)}, k={k})"
        ids, probs, cum = out
        t.record(f"{what}: ids, most likely first", ids.long() if isinstance(ids, torch.Tensor) else ids)
        t.record(f"{what}: probabilities over the whole vocabulary", probs)
        t.record(f"{what}: cumulative probabilities", cum)
