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
from labsupport.check import exercise
from labsupport.config import CfgNode
from labsupport.generate import apply_temperature, generate, sample_next, top_k_filter
from labsupport.gpt import IGNORE_INDEX

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


def _call(fn: Callable, logits: torch.Tensor, arg: float | int, name: str) -> torch.Tensor:
    """Call the student's function on a copy and make sure it neither changed its input nor returned junk."""
    before = logits.clone()
    out = fn(logits, arg)
    if not torch.equal(logits, before):
        raise AssertionError(f"{name} changed its input tensor in place; return a new tensor instead "
                             f"(e.g. logits / t or logits.masked_fill(...), not logits /= t or logits[...] = ...)")
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{name} must return a tensor, got {type(out).__name__}")
    if out.shape != logits.shape:
        raise AssertionError(f"{name}: expected shape {tuple(logits.shape)} (same as the logits), "
                             f"got {tuple(out.shape)}")
    return out


def _same(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    inf_want, inf_got = torch.isneginf(want), torch.isneginf(got)
    if not torch.equal(inf_got, inf_want):
        row, col = (inf_got != inf_want).nonzero()[0].tolist()
        raise AssertionError(f"{what}: entry [{row}, {col}] should {'' if inf_want[row, col] else 'not '}be -inf "
                             f"(got {got[row, col].item():.4g})")
    if not torch.allclose(got[~inf_want].float(), want[~inf_want].float(), rtol=1e-5, atol=1e-6):
        diff = (got.float() - want.float()).abs().masked_fill(inf_want, 0)
        row, col = divmod(int(diff.argmax()), want.size(-1))
        raise AssertionError(f"{what}: entry [{row}, {col}] expected {want[row, col].item():.4g}, "
                             f"got {got[row, col].item():.4g}")


def _sampling_step(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator,
                   temp_fn: Callable = apply_temperature, topk_fn: Callable = top_k_filter) -> torch.Tensor:
    """The notebook's sampling step with pluggable temperature / top-k functions: (B, V) -> (B,)."""
    logits = temp_fn(logits, temperature)
    if top_k is not None:
        logits = topk_fn(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def _same_draws(what: str, temperature: float, top_k: int | None, **fns: Callable) -> None:
    logits = random_logits(rows=256, vocab=50, seed=7)
    got = _sampling_step(logits.clone(), temperature, top_k, torch.Generator().manual_seed(0), **fns)
    want = sample_next(logits, temperature, top_k, generator=torch.Generator().manual_seed(0))
    if not torch.equal(got, want):
        n = int((got != want).sum())
        raise AssertionError(f"{what}: a sampling step built on your function drew different tokens than "
                             f"labsupport.generate.sample_next with the same seed in {n} of {len(want)} rows")


# ---------------------------------------------------------------------------------------------- checks


@exercise("04.2", title="temperature scaling",
          hint="dividing every logit by T multiplies each log-odds by 1/T; return a new tensor, leave logits untouched",
          hint2="one arithmetic operator on the tensor; not an in-place one such as /=")
def check_temperature(student_apply_temperature: Callable) -> str:
    cases = [(random_logits(seed=1), t) for t in (1.0, 0.3, 1.5, 2, 0.01, 100.0)]
    cases += [(random_logits(rows=1, vocab=7, seed=2)[0], 0.5), (tie_logits(), 0.7)]  # one row (V,); -inf kept
    for logits, t in cases:
        got = _call(student_apply_temperature, logits.clone(), t, "apply_temperature")
        _same(got.reshape(-1, logits.size(-1)), apply_temperature(logits, t).reshape(-1, logits.size(-1)),
              f"apply_temperature(logits of shape {tuple(logits.shape)}, temperature={t})")
    for t in (0.3, 1.0, 1.5):
        _same_draws(f"temperature={t}", t, None, temp_fn=student_apply_temperature)
    return f"{len(cases)} logit tensors scaled correctly; sampled tokens match sample_next at T = 0.3, 1.0, 1.5"


@exercise("04.3", title="top-k filtering",
          hint="each row has its own threshold, its k-th largest logit; everything below it gets probability 0, "
               "i.e. the logit -inf (ties with the threshold stay)",
          hint2="torch.topk(..., dim=-1).values gives each row's largest values in order; Tensor.masked_fill "
                "returns a new tensor; cap k at the vocabulary size")
def check_top_k(student_top_k_filter: Callable) -> str:
    logits = random_logits(seed=3)  # (8, 20)
    V = logits.size(-1)
    cases = [(logits, k) for k in (1, 3, 10, V - 1, V, V + 5)]  # k >= V keeps everything
    cases += [(tie_logits(), k) for k in (1, 2, 3, 5)]  # ties with the k-th largest are kept
    cases += [(random_logits(rows=1, vocab=5, seed=4), 2)]
    for lg, k in cases:
        got = _call(student_top_k_filter, lg.clone(), k, "top_k_filter")
        _same(got, top_k_filter(lg, k), f"top_k_filter(logits of shape {tuple(lg.shape)}, k={k})")
    for t, k in ((1.0, 5), (0.7, 1), (1.5, 40)):
        _same_draws(f"temperature={t}, top_k={k}", t, k, topk_fn=student_top_k_filter)
    return f"{len(cases)} cases filtered correctly (ties, k >= V, -inf entries); sampled tokens match sample_next"


# ---------------------------------------------------------------------------------------------- 04.1 the model


def tiny_config(block_size: int = 8, vocab_size: int = 11, n_layer: int = 2) -> CfgNode:
    """A small lab GPT config with dropout off, so two models with the same weights compute the same thing."""
    config = lab_gpt.GPT.get_default_config()
    config.merge_from_dict(dict(model_type=None, n_layer=n_layer, n_head=2, n_embd=16, vocab_size=vocab_size,
                                block_size=block_size, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    return config


def tiny_gpt(seed: int = 0, cls: type = lab_gpt.GPT, **kwargs) -> torch.nn.Module:
    """A seeded lab GPT (or subclass), built quietly (GPT prints its parameter count)."""
    with contextlib.redirect_stdout(io.StringIO()), torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(tiny_config(**kwargs))
    return model.eval()


def _logits_of(out: object, what: str) -> torch.Tensor:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"{what} must return a pair (logits, loss), got {type(out).__name__}")
    return out[0]


@exercise("04.1", title="the GPT forward pass",
          hint="a block adds each sub-layer's output to its input (a residual), and normalises only what goes "
               "into the sub-layer (pre-LayerNorm); the model adds a token and a position vector, runs the blocks, "
               "normalises once more and maps each position to vocabulary scores",
          hint2="self.ln_1 / self.attn / self.ln_2 / self.mlp in a block; self.transformer.wte, .wpe, .drop, .h, "
                ".ln_f and self.lm_head in the model; torch.arange(T) for the positions; "
                "F.cross_entropy(..., ignore_index=IGNORE_INDEX) on (B*T, V) logits")
def check_gpt_forward(student_block: type, student_gpt: type) -> str:
    for cls, name in ((student_block, "Block"), (student_gpt, "GPT")):
        if not isinstance(cls, type):
            raise AssertionError(f"pass your {name} class itself (labsupport.check('04.1', Block, GPT)), "
                                 f"got {type(cls).__name__}")
    if not issubclass(student_gpt, lab_gpt.GPT):
        raise AssertionError("GPT must subclass labsupport.gpt.GPT (class GPT(gpt.GPT): ...)")
    # the block on its own
    ref_block = tiny_gpt().transformer.h[0]
    block = student_block(tiny_config())
    try:
        block.load_state_dict(ref_block.state_dict())
    except RuntimeError as err:
        raise AssertionError(f"your Block's parameters differ from labsupport.gpt.Block's: {err}") from None
    block.eval()
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1))  # (B, T, C)
    with torch.no_grad():
        got, want = block(x), ref_block(x)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        raise AssertionError(f"Block.forward must return a tensor of shape {tuple(want.shape)} (B, T, C), "
                             f"got {getattr(got, 'shape', type(got).__name__)}")
    if not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
        raise AssertionError("Block.forward gives different outputs than the reference block with the same weights: "
                             "LayerNorm goes *inside* each residual branch (x + attn(ln_1(x))), attention first, "
                             "then the MLP on the updated x")
    # the whole model; the student's class builds its blocks from its own block_cls
    ref = tiny_gpt(seed=2)
    model = tiny_gpt(seed=3, cls=student_gpt)
    model.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(4)
    idx = torch.randint(0, 11, (4, 6), generator=g)  # T = 6 < block_size = 8
    targets = torch.randint(0, 11, (4, 6), generator=g)
    targets[0, :3] = IGNORE_INDEX  # e.g. prompt tokens or padding
    targets[2, 4:] = IGNORE_INDEX
    with torch.no_grad():
        want_logits, want_loss = ref(idx, targets)
        out = model(idx)
        logits = _logits_of(out, "GPT.forward(idx)")
        if out[1] is not None:
            raise AssertionError("GPT.forward(idx) without targets must return (logits, None)")
        if not isinstance(logits, torch.Tensor) or logits.shape != want_logits.shape:
            raise AssertionError(f"logits must have shape (B, T, vocab_size) = {tuple(want_logits.shape)}, "
                                 f"got {getattr(logits, 'shape', type(logits).__name__)}")
        if not torch.allclose(logits, want_logits, atol=1e-5, rtol=1e-5):
            raise AssertionError("with the reference weights your GPT gives different logits: token embedding + "
                                 "position embedding (positions 0..T-1), dropout, every block in order, the final "
                                 "LayerNorm, then lm_head")
        out = model(idx, targets)
        _logits_of(out, "GPT.forward(idx, targets)")
        loss = out[1]
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise AssertionError(f"the loss must be a scalar tensor, got {short_repr(loss)}")
        if not torch.allclose(loss, want_loss, atol=1e-5, rtol=1e-5):
            counted = F.cross_entropy(want_logits.flatten(0, 1), targets.clamp_min(0).flatten())
            why = (" (it looks like targets equal to -100 were counted: pass ignore_index)"
                   if torch.allclose(loss, counted, atol=1e-4) else "")
            raise AssertionError(f"loss: expected {want_loss.item():.5f} (mean cross-entropy over the targets that "
                                 f"are not {IGNORE_INDEX}), got {loss.item():.5f}{why}")
        # causality: changing token t+1 must not change any output at positions <= t
        for t in (0, 2, 4):
            changed = idx.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1) % 11
            other = _logits_of(model(changed), "GPT.forward")
            if not torch.allclose(other[:, : t + 1], logits[:, : t + 1], atol=1e-6):
                raise AssertionError(f"changing the token at position {t + 1} changed your outputs at positions "
                                     f"<= {t}: the model must be causal (each position sees only itself and earlier)")
    return ("Block matches the reference block; GPT gives the reference logits (1e-5) and loss with ignored "
            "targets, and no position sees the future")


def short_repr(x: object) -> str:
    s = repr(x)
    return s if len(s) < 80 else s[:77] + "..."


# ---------------------------------------------------------------------------------------------- 04.4 generation


def _as_pair(out: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"generate must return a pair (ids, probs), got {type(out).__name__}")
    ids, probs = out
    if not isinstance(ids, torch.Tensor) or not isinstance(probs, torch.Tensor):
        raise AssertionError("generate must return two tensors: ids (B, T + S) and probs (B, S)")
    return ids, probs


def _compare_generation(student_generate: Callable, model: torch.nn.Module, prompt: torch.Tensor, n: int,
                        what: str, *, temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
                        eos_id: int | None = None, seed: int = 0) -> None:
    before = prompt.clone()
    ids, probs = _as_pair(student_generate(model, prompt.clone(), n, temperature=temperature, top_k=top_k,
                                           greedy=greedy, eos_id=eos_id, generator=torch.Generator().manual_seed(seed)))
    want, details = generate(model, prompt, n, temperature=0 if greedy else temperature, top_k=top_k, seed=seed,
                             eos_id=eos_id, return_details=True)
    if not torch.equal(prompt, before):
        raise AssertionError(f"{what}: generate changed the prompt tensor in place")
    if ids.shape != want.shape:
        raise AssertionError(f"{what}: expected ids of shape {tuple(want.shape)} (prompt + new tokens"
                             f"{', stopping once every row has produced eos' if eos_id is not None else ''}), "
                             f"got {tuple(ids.shape)}")
    if not torch.equal(ids[:, : prompt.size(1)], prompt):
        raise AssertionError(f"{what}: the returned ids must start with the prompt")
    if not torch.equal(ids, want):
        row, col = (ids != want).nonzero()[0].tolist()
        raise AssertionError(f"{what}: row {row}, new token {col - prompt.size(1)}: expected id {int(want[row, col])}, "
                             f"got {int(ids[row, col])}")
    ref_p = details.token_probs
    if probs.shape != ref_p.shape:
        raise AssertionError(f"{what}: probs must have shape (B, S) = {tuple(ref_p.shape)}, one per new token, "
                             f"got {tuple(probs.shape)}")
    real = ~torch.isnan(ref_p)  # steps after a row's eos are padding: any value is fine
    if not torch.allclose(probs[real].float(), ref_p[real], atol=1e-5, rtol=1e-4):
        raise AssertionError(f"{what}: the probability of each chosen token is softmax(logits) at temperature 1, "
                             f"before top-k (the model's own belief); expected {ref_p[real][:4].tolist()}..., "
                             f"got {probs[real][:4].tolist()}...")


@exercise("04.4", title="the generation loop",
          hint="each step: keep only the last block_size tokens, run the model, read the scores at the LAST "
               "position, turn them into a distribution (your temperature and top-k), choose a token, append it; "
               "a row that produced eos keeps getting eos, and the loop ends when every row has",
          hint2="block_size(model) from labsupport.generate; model(context)[0][:, -1, :]; F.softmax; argmax or "
                "torch.multinomial(probs, 1, generator=generator); probs.gather(1, ...); torch.cat(..., dim=1)")
def check_generate(student_generate: Callable) -> str:
    model = tiny_gpt(seed=5, block_size=6, vocab_size=13)
    g = torch.Generator().manual_seed(6)
    short_prompt = torch.randint(0, 13, (2, 3), generator=g)
    long_prompt = torch.randint(0, 13, (3, 9), generator=g)  # longer than block_size = 6: must be cropped
    _compare_generation(student_generate, model, short_prompt, 10, "greedy, 10 new tokens", greedy=True)
    _compare_generation(student_generate, model, long_prompt, 4, "greedy, a prompt longer than the block size",
                        greedy=True)
    for t, k in ((1.0, None), (0.7, 4), (1.5, 2)):
        _compare_generation(student_generate, model, long_prompt, 8, f"sampling at temperature {t}, top_k={k}",
                            temperature=t, top_k=k, seed=7)
    # eos: take a token the greedy run produces in row 0 and make it the end of sequence
    first = generate(model, short_prompt, 10, temperature=0)
    eos = int(first[0, short_prompt.size(1) + 2])
    _compare_generation(student_generate, model, short_prompt, 10, f"greedy with eos_id={eos}", greedy=True,
                        eos_id=eos)
    _compare_generation(student_generate, model, long_prompt, 12, f"sampling with eos_id={eos}", temperature=1.2,
                        eos_id=eos, seed=8)
    return ("same ids and chosen-token probabilities as labsupport.generate.generate: greedy, sampled (temperature, "
            "top-k), cropped to the block size, stopping at eos")


# ---------------------------------------------------------------------------------------------- 04.5 candidates


@exercise("04.5", title="top-k candidate table",
          hint="each step's scores become a probability distribution; the table lists the k most likely tokens, most "
               "likely first, with their probabilities and the running total of those probabilities",
          hint2="F.softmax(step_logits, dim=-1), then .topk(k, dim=-1) (values and indices) and .cumsum(dim=-1)")
def check_top_candidates(student_top_candidates: Callable) -> str:
    g = torch.Generator().manual_seed(9)
    for steps, vocab, k, scale in ((5, 30, 6, 3.0), (1, 8, 3, 1.0), (4, 6, 6, 5.0)):
        logits = scale * torch.randn(steps, vocab, generator=g)
        out = student_top_candidates(logits.clone(), k=k)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise AssertionError("top_candidates must return three tensors: (ids, probs, cumulative), each (S, k)")
        ids, probs, cum = (torch.as_tensor(t) for t in out)
        top = F.softmax(logits, dim=-1).topk(k, dim=-1)
        for name, got, want in (("ids", ids, top.indices), ("probs", probs, top.values),
                                ("cumulative", cum, top.values.cumsum(-1))):
            if got.shape != want.shape:
                raise AssertionError(f"{name} must have shape (S, k) = {tuple(want.shape)}, got {tuple(got.shape)}")
            if name == "ids" and not torch.equal(got.long(), want):
                raise AssertionError(f"ids for {steps} steps, k={k}: expected {want[0].tolist()} in the first step "
                                     f"(most likely first), got {got[0].tolist()}")
            if name != "ids" and not torch.allclose(got.float(), want, atol=1e-5):
                raise AssertionError(f"{name} for {steps} steps, k={k}: expected {want[0].tolist()} in the first "
                                     f"step, got {got[0].tolist()} (probabilities of the whole vocabulary, "
                                     f"not renormalised over the k)")
    return "ids, probabilities and cumulative probabilities match softmax + topk + cumsum"
