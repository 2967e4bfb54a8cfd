"""Lab 04's self-checks pass the reference solutions (and a few equivalent ones) and catch typical wrong answers."""

import pytest
import torch
import torch.nn.functional as F

from labsupport.check import run_check
from labsupport.checks import lab04
from labsupport.generate import apply_temperature, sample_next, top_k_filter

# ---------------------------------------------------------------------------------------------- right answers


def temperature_by_reciprocal(logits, temperature):  # multiplies by 1/T: same up to rounding
    return logits * (1.0 / temperature)


def top_k_by_sorting(logits, k):  # a different but correct route: sort, read the k-th value, compare
    k = min(k, logits.size(-1))
    kth = logits.sort(dim=-1, descending=True).values[:, k - 1: k]
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


# ---------------------------------------------------------------------------------------------- wrong answers


def temperature_multiplies(logits, temperature):
    return logits * temperature


def temperature_ignored(logits, temperature):
    return logits.clone()


def temperature_in_place(logits, temperature):
    logits /= temperature
    return logits


def temperature_returns_probs(logits, temperature):
    return F.softmax(logits / temperature, dim=-1)


def temperature_squared(logits, temperature):
    return logits / temperature**2


def temperature_shifted(logits, temperature):  # subtracts the max first: not what the docstring asks for
    return (logits - 1.0) / temperature


def top_k_keeps_k_plus_one(logits, k):
    kth = torch.topk(logits, min(k + 1, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_drops_ties(logits, k):  # keeps exactly k tokens by index: drops tokens tied with the k-th
    idx = torch.topk(logits, min(k, logits.size(-1)), dim=-1).indices
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, idx, logits.gather(-1, idx))


def top_k_less_equal(logits, k):  # masks the k-th itself too: keeps k - 1
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits <= kth, float("-inf"))


def top_k_zero_fill(logits, k):  # 0 is a perfectly ordinary logit, not "removed"
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_k_global_threshold(logits, k):  # one threshold for the whole batch instead of one per row
    kth = torch.topk(logits.flatten(), min(k, logits.numel())).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_crashes_when_k_exceeds_vocab(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_in_place(logits, k):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    logits[logits < kth] = float("-inf")
    return logits


def top_k_smallest(logits, k):  # keeps the k least likely tokens
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1, largest=False).values[..., -1:]
    return logits.masked_fill(logits > kth, float("-inf"))


def not_implemented(*args, **kwargs):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------- tests

RIGHT = [
    ("04.2", apply_temperature),
    ("04.2", temperature_by_reciprocal),
    ("04.3", top_k_filter),
    ("04.3", top_k_by_sorting),
]
WRONG = [
    ("04.2", temperature_multiplies),
    ("04.2", temperature_ignored),
    ("04.2", temperature_in_place),
    ("04.2", temperature_returns_probs),
    ("04.2", temperature_squared),
    ("04.2", temperature_shifted),
    ("04.3", top_k_keeps_k_plus_one),
    ("04.3", top_k_drops_ties),
    ("04.3", top_k_less_equal),
    ("04.3", top_k_zero_fill),
    ("04.3", top_k_global_threshold),
    ("04.3", top_k_crashes_when_k_exceeds_vocab),
    ("04.3", top_k_in_place),
    ("04.3", top_k_smallest),
]


@pytest.mark.parametrize("ex,fn", RIGHT, ids=[f"{ex}-{fn.__name__}" for ex, fn in RIGHT])
def test_right_answer_passes(ex, fn):
    ok, msg = run_check(ex, fn)
    assert ok, msg


@pytest.mark.parametrize("ex,fn", WRONG, ids=[f"{ex}-{fn.__name__}" for ex, fn in WRONG])
def test_wrong_answer_fails(ex, fn):
    ok, msg = run_check(ex, fn)
    assert not ok and msg


@pytest.mark.parametrize("ex", ["04.2", "04.3", "04.4", "04.5"])
def test_unfinished_exercise_fails_cleanly(ex):
    ok, msg = run_check(ex, not_implemented)
    assert not ok and "not implemented" in msg


def test_messages_say_what_is_wrong():
    assert "in place" in run_check("04.2", temperature_in_place)[1]
    assert "-inf" in run_check("04.3", top_k_zero_fill)[1]
    assert "changed its input" in run_check("04.3", top_k_in_place)[1]


def test_checks_are_deterministic():
    assert run_check("04.3", top_k_drops_ties) == run_check("04.3", top_k_drops_ties)


def test_sampling_step_with_reference_functions_matches_sample_next():
    """The check's own sampling step must agree with sample_next exactly, or right answers would fail."""
    logits = lab04.random_logits(rows=64, vocab=30, seed=11)
    for t, k in ((0.5, None), (1.0, 3), (2.0, 30)):
        got = lab04._sampling_step(logits, t, k, torch.Generator().manual_seed(5))
        assert torch.equal(got, sample_next(logits, t, k, generator=torch.Generator().manual_seed(5)))


# ---------------------------------------------------------------------------------------------- 04.1 the model

from labsupport import gpt  # noqa: E402
from labsupport.generate import block_size  # noqa: E402


class PostNormBlock(gpt.BlockLayers):  # the original Transformer's order: normalise after the residual sum
    def forward(self, x):
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class NoResidualBlock(gpt.BlockLayers):
    def forward(self, x):
        return self.mlp(self.ln_2(self.attn(self.ln_1(x))))


class RefBlock(gpt.BlockLayers):  # the solution, as in the notebook
    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def _gpt(**kw):
    return type("G", (gpt.GPTLayers,), {"block_cls": RefBlock,
                                         "forward": lambda self, idx, targets=None: _forward(self, idx, targets, **kw)})


def _forward(self, idx, targets=None, *, pos=True, ln_f=True, ignore=True, causal=True):
    B, T = idx.size()
    x = self.transformer.wte(idx)
    if pos:
        x = x + self.transformer.wpe(torch.arange(T))
    x = self.transformer.drop(x)
    for block in self.transformer.h:
        x = block(x)
    if ln_f:
        x = self.transformer.ln_f(x)
    if not causal:  # leaks the future: every position gets the mean of all positions
        x = x + x.mean(dim=1, keepdim=True)
    logits = self.lm_head(x)
    loss = None
    if targets is not None:
        flat = targets.flatten() if ignore else targets.flatten().clamp_min(0)  # -100 counted as token 0
        loss = F.cross_entropy(logits.flatten(0, 1), flat, ignore_index=-100)
    return logits, loss


def gpt_variant(**kw):
    return _gpt(**kw)


RefGPT = _gpt()


def test_gpt_forward_reference_passes():
    ok, msg = run_check("04.1", RefBlock, RefGPT)
    assert ok, msg


@pytest.mark.parametrize("block,model,needle", [
    (PostNormBlock, RefGPT, "Block.forward"),
    (NoResidualBlock, RefGPT, "Block.forward"),
    (RefBlock, gpt_variant(pos=False), "logits"),
    (RefBlock, gpt_variant(ln_f=False), "logits"),
    (RefBlock, gpt_variant(ignore=False), "ignore_index"),
    (RefBlock, gpt_variant(causal=False), "logits"),
])
def test_gpt_forward_mistakes_fail(block, model, needle):
    ok, msg = run_check("04.1", block, model)
    assert not ok and needle in msg, msg


def test_gpt_forward_needs_classes():
    ok, msg = run_check("04.1", RefBlock, RefGPT(lab04.tiny_config()))
    assert not ok and "class itself" in msg
    ok, msg = run_check("04.1", RefBlock, gpt.GPT)  # the library's own class is not a GPTLayers subclass of yours
    assert ok, msg  # (it is a GPTLayers subclass: in the grader, a tripwire stands in for labsupport.gpt.GPT)


# ---------------------------------------------------------------------------------------------- 04.4 generation


def ref_generate(model, ids, max_new_tokens, temperature=1.0, top_k=None, greedy=False, eos_id=None, generator=None,
                 *, crop=True, probs_after_temperature=False, stop_at_first_eos=False, same_logits_each_row=False):
    limit = block_size(model)
    done = torch.zeros(ids.size(0), dtype=torch.bool)
    chosen = []
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = ids[:, -limit:] if crop else ids
            logits = model(context)[0][:, -1, :]
            if same_logits_each_row:
                logits = model(context)[0][:, 0, :]
            probs = F.softmax(logits, dim=-1)
            if greedy:
                nxt = logits.argmax(dim=-1)
            else:
                scaled = apply_temperature(logits, temperature)
                if top_k is not None:
                    scaled = top_k_filter(scaled, top_k)
                if probs_after_temperature:
                    probs = F.softmax(scaled, dim=-1)
                nxt = torch.multinomial(F.softmax(scaled, dim=-1), 1, generator=generator)[:, 0]
            if eos_id is not None:
                nxt = nxt.masked_fill(done, eos_id)
            chosen.append(probs.gather(1, nxt[:, None])[:, 0])
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if eos_id is not None:
                done = done | (nxt == eos_id)
                if bool(done.all() if not stop_at_first_eos else done.any()):
                    break
    return ids, torch.stack(chosen, dim=1)


def _variant(**kw):
    return lambda *a, **k: ref_generate(*a, **k, **kw)


def test_generate_reference_passes():
    ok, msg = run_check("04.4", ref_generate)
    assert ok, msg


@pytest.mark.parametrize("kw,needle", [
    (dict(crop=False), "block_size"),
    (dict(probs_after_temperature=True), "chosen token"),
    (dict(stop_at_first_eos=True), "eos"),
    (dict(same_logits_each_row=True), "ids"),
])
def test_generate_mistakes_fail(kw, needle):
    ok, msg = run_check("04.4", _variant(**kw))
    assert not ok and needle in msg, msg


def test_generate_ignoring_the_generator_fails():
    def no_generator(model, ids, n, temperature=1.0, top_k=None, greedy=False, eos_id=None, generator=None):
        return ref_generate(model, ids, n, temperature, top_k, greedy, eos_id, torch.Generator().manual_seed(123))

    assert not run_check("04.4", no_generator)[0]


# ---------------------------------------------------------------------------------------------- 04.5 candidates


def candidates(step_logits, k=6):
    top = F.softmax(step_logits, dim=-1).topk(k, dim=-1)
    return top.indices, top.values, top.values.cumsum(dim=-1)


def candidates_renormalised(step_logits, k=6):
    top = step_logits.topk(k, dim=-1)
    p = F.softmax(top.values, dim=-1)
    return top.indices, p, p.cumsum(dim=-1)


def candidates_ascending(step_logits, k=6):
    ids, p, c = candidates(step_logits, k)
    return ids.flip(-1), p.flip(-1), p.flip(-1).cumsum(-1)


def candidates_no_cumsum(step_logits, k=6):
    ids, p, _ = candidates(step_logits, k)
    return ids, p, p


def test_top_candidates():
    assert run_check("04.5", candidates)[0]
    for wrong in (candidates_renormalised, candidates_ascending, candidates_no_cumsum):
        ok, msg = run_check("04.5", wrong)
        assert not ok and msg
