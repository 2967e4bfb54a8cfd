"""labsupport.streaming (Lab 05): each pipeline stage, worker sharding, overlap/perplexity semantics, errors,
the evaluator on a tiny GPT-Neo (against transformers' own loss), and the benchmark script."""

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from labsupport import streaming
from labsupport.bpe import hf_gpt2_tokenizer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tokenizer():
    return streaming.build_tokenizer()


@pytest.fixture(scope="module")
def stream():
    return streaming.load_stream("train")


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return streaming.load_model(tokenizer, device="cpu")


def as_tuples(blocks):
    return [(tuple(b["input_ids"].tolist()), tuple(b["attention_mask"].tolist()), int(b["overlap"])) for b in blocks]


def reference_blocks(docs, block_size, stride, eos):
    """Brute force: block k = stream[k*stride : k*stride + block_size]; then the leftover, if it is new."""
    s = [t for d in docs for t in (*d, eos)]
    starts = list(range(0, len(s) - block_size + 1, stride)) if len(s) >= block_size else []
    blocks = [s[i : i + block_size] for i in starts]
    covered = starts[-1] + block_size if starts else 0
    nxt = starts[-1] + stride if starts else 0
    if len(s) > covered:
        blocks.append(s[nxt:])
    return blocks


# ---------------------------------------------------------------------------------------------- stages 1-3


def test_load_stream_is_a_lazy_stream_in_the_poem_schema(stream):
    assert isinstance(stream, datasets.IterableDataset)
    first = next(iter(stream))
    assert set(first) == {"id", "verse_text", "label"} and first["label"] in range(4)


def test_format_example():
    example = {"id": 7, "verse_text": "the sea sings", "label": 3}
    assert streaming.format_example(example) == "<sentiment_3> the sea sings"
    with pytest.raises(ValueError, match="label must be 0-3"):
        streaming.format_example({"verse_text": "x", "label": 4})


def test_tokenizer_has_pad_and_four_single_id_sentiment_tokens(tokenizer):
    base = hf_gpt2_tokenizer()
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == base.eos_token_id
    ids = tokenizer.convert_tokens_to_ids(list(streaming.SENTIMENT_TOKENS))
    assert ids == list(range(len(base), len(base) + 4)) and len(tokenizer) == len(base) + 4
    assert set(streaming.SENTIMENT_TOKENS) <= set(tokenizer.all_special_tokens)
    # the tag is one token; the rest tokenizes exactly as plain GPT-2 BPE
    assert tokenizer("<sentiment_2> the sea sings")["input_ids"] == [ids[2], *base(" the sea sings")["input_ids"]]


def test_tokenize_stream_is_lazy_and_batched_equals_per_example(stream, tokenizer):
    small = stream.take(30)
    batched = streaming.tokenize_stream(small, tokenizer, batch_size=7)
    assert isinstance(batched, datasets.IterableDataset)
    per_example = streaming.tokenize_stream(small, tokenizer, batched=False)
    want = [tokenizer(streaming.format_example(ex))["input_ids"] for ex in small]
    assert [ex["input_ids"] for ex in batched] == [ex["input_ids"] for ex in per_example] == want


def test_tokenize_stream_rejects_other_schemas(tokenizer):
    other = datasets.Dataset.from_dict({"text": ["a"]}).to_iterable_dataset()
    with pytest.raises(ValueError, match="lacks column"):
        streaming.tokenize_stream(other, tokenizer)


# ---------------------------------------------------------------------------------------------- stage 4

docs_strategy = st.lists(st.lists(st.integers(1, 50), max_size=12), max_size=8)


@settings(max_examples=150, deadline=None)
@given(docs=docs_strategy, block_size=st.integers(2, 9), data=st.data())
def test_make_blocks_matches_brute_force_and_covers_the_stream(docs, block_size, data):
    stride = data.draw(st.integers(1, block_size))
    blocks = list(streaming.make_blocks(iter(docs), block_size, stride, eos_id=0))
    assert blocks == reference_blocks(docs, block_size, stride, 0)
    n = sum(len(d) + 1 for d in docs)
    covered = {k * stride + j for k, b in enumerate(blocks) for j in range(len(b))}
    assert covered == set(range(n))  # nothing lost
    assert all(len(b) == block_size for b in blocks[:-1])


@pytest.mark.parametrize("block_size, stride, msg", [(4, 0, "stride"), (4, 5, "stride"), (1, 1, "block_size"),
                                                     (4, -2, "stride")])
def test_make_blocks_rejects_bad_sizes_at_once(block_size, stride, msg):
    with pytest.raises(ValueError, match=msg) as err:
        streaming.make_blocks([[1, 2]], block_size, stride, 0)  # no next(): the check is eager
    assert "\n" not in str(err.value)


def test_iter_blocks_pads_the_last_block_and_marks_overlap():
    blocks = list(streaming.iter_blocks([[1, 2, 3], [4, 5, 6, 7]], block_size=4, stride=3, eos_id=0, pad_id=99))
    assert as_tuples(blocks) == [((1, 2, 3, 0), (1, 1, 1, 1), 0), ((0, 4, 5, 6), (1, 1, 1, 1), 1),
                                 ((6, 7, 0, 99), (1, 1, 1, 0), 1)]
    dropped = streaming.iter_blocks([[1, 2, 3], [4, 5, 6, 7]], 4, 3, 0, 99, drop_last=True)
    assert as_tuples(dropped) == as_tuples(blocks[:2])


def test_iter_blocks_shards_restart_the_context():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8], [9]]
    blocks = as_tuples(streaming.iter_blocks(docs, 3, 2, eos_id=0, pad_id=0, docs_per_shard=2))
    want = [as_tuples(streaming.iter_blocks(shard, 3, 2, 0, 0)) for shard in (docs[:2], docs[2:])]
    assert blocks == want[0] + want[1] and blocks[len(want[0])][2] == 0  # second shard starts fresh


# ---------------------------------------------------------------------------------------------- stage 5


def test_collate_masks_padding_by_attention_mask_and_overlap_in_sliding_labels():
    blocks = list(streaming.iter_blocks([[5, 6, 7], [8, 9, 10, 11]], 4, 2, eos_id=0, pad_id=0))
    batch = streaming.collate_blocks(blocks)
    assert batch["input_ids"].shape == batch["labels"].shape == (len(blocks), 4)
    # pad id == EOS id: a real EOS stays a target, a padded one does not
    assert batch["labels"].tolist() == [[5, 6, 7, 0], [7, 0, 8, 9], [8, 9, 10, 11], [10, 11, 0, -100]]
    assert batch["sliding_labels"].tolist() == [[5, 6, 7, 0], [-100, -100, 8, 9], [-100, -100, 10, 11],
                                                [-100, -100, 0, -100]]


def sliding_and_naive_targets(docs, block_size, stride):
    """How often each stream position is a target: (sliding counts, naive counts)."""
    batch = streaming.collate_blocks(list(streaming.iter_blocks(docs, block_size, stride, eos_id=0, pad_id=0)))
    sliding, naive = Counter(), Counter()
    for k in range(batch["labels"].shape[0]):
        for j in range(1, block_size):  # position 0 of a block is never a target (nothing precedes it)
            naive[k * stride + j] += int(batch["labels"][k, j] != -100)
            sliding[k * stride + j] += int(batch["sliding_labels"][k, j] != -100)
    return sliding, naive, batch


@pytest.mark.parametrize("block_size, stride", [(8, 6), (8, 1), (5, 4), (7, 7)])
def test_sliding_window_scores_every_token_once(block_size, stride):
    docs = [list(range(1, n)) for n in (9, 3, 14, 1, 6)]
    n = sum(len(d) + 1 for d in docs)
    sliding, naive, batch = sliding_and_naive_targets(docs, block_size, stride)
    if stride < block_size:  # every token but the stream's first is scored exactly once
        assert {p: c for p, c in sliding.items() if c} == dict.fromkeys(range(1, n), 1)
        # the naive average scores a token in every block where it sits at positions 1..block_size-1
        # (so an overlap of exactly 1 token is pure context and double-counts nothing)
        assert max(naive.values()) == (block_size - 2) // stride + 1
    else:  # no overlap: both score the same positions (a block's first token has no context)
        assert torch.equal(batch["labels"], batch["sliding_labels"])
        assert {p for p, c in sliding.items() if c} == set(range(1, n)) - set(range(0, n, block_size))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on a 2-core machine
@pytest.mark.parametrize("num_workers", [1, 3])
def test_workers_produce_the_same_multiset_of_blocks(stream, tokenizer, num_workers):
    def blocks(workers, docs_per_shard):
        ds = streaming.StreamingLMIterableDataset(stream, tokenizer, block_size=32, stride=24,
                                                  docs_per_shard=docs_per_shard)
        out = []
        for batch in streaming.make_dataloader(ds, batch_size=16, num_workers=workers):
            overlap = (batch["sliding_labels"] == -100).sum(1) - (batch["attention_mask"] == 0).sum(1)
            out += [(tuple(i.tolist()), tuple(m.tolist()), int(o))
                    for i, m, o in zip(batch["input_ids"], batch["attention_mask"], overlap)]
        return out

    for docs_per_shard in (16, 300):  # 25 shards; 2 shards (fewer than the workers)
        single = blocks(0, docs_per_shard)
        assert len(single) > 20 and Counter(blocks(num_workers, docs_per_shard)) == Counter(single)


def test_dataset_rejects_bad_arguments(stream, tokenizer):
    with pytest.raises(ValueError, match="docs_per_shard"):
        streaming.StreamingLMIterableDataset(stream, tokenizer, docs_per_shard=0)
    with pytest.raises(ValueError, match="stride"):
        streaming.StreamingLMIterableDataset(stream, tokenizer, block_size=8, stride=9)


# ---------------------------------------------------------------------------------------------- stages 6-7


def test_load_model_resizes_for_the_new_tokens(model, tokenizer):
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
    assert not model.training and type(model).__name__ == "GPTNeoForCausalLM"


def test_token_nll_matches_transformers_loss():
    torch.manual_seed(0)
    cfg = GPTNeoConfig(vocab_size=40, max_position_embeddings=32, hidden_size=16, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], window_size=4)
    tiny = GPTNeoForCausalLM(cfg).eval()
    ids = torch.randint(0, 40, (3, 10))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    with torch.inference_mode():
        nll = streaming.token_nll(tiny, ids, mask)
        assert torch.allclose(nll, streaming.token_nll(tiny, ids, mask, chunk_rows=4))  # chunking changes nothing
        want = tiny(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert nll.shape == (3, 9)
    assert torch.allclose(nll[mask[:, 1:].bool()].mean(), want, atol=1e-6)


def test_perplexity_from_losses():
    assert streaming.perplexity_from_losses([1.0, 3.0]) == pytest.approx(math.exp(2.0))
    assert streaming.perplexity_from_losses([1.0, 3.0], [3, 1]) == pytest.approx(math.exp(1.5))
    assert streaming.perplexity_from_losses([1000.0]) > 1e300  # no OverflowError
    with pytest.raises(ValueError, match="no losses"):
        streaming.perplexity_from_losses([])
    with pytest.raises(ValueError, match="token counts"):
        streaming.perplexity_from_losses([1.0, 2.0], [3])


def test_evaluate_matches_a_plain_loop_with_transformers_loss(model, tokenizer, stream):
    small = stream.take(40)
    res = streaming.evaluate(model, tokenizer, small, block_size=32, stride=24, batch_size=4)
    ds = streaming.StreamingLMIterableDataset(small, tokenizer, block_size=32, stride=24)
    losses, sliding_sum, sliding_n, tokens = [], 0.0, 0, 0
    with torch.inference_mode():
        for batch in streaming.make_dataloader(ds, batch_size=4):
            kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            losses.append(model(**kw, labels=batch["labels"]).loss.item())
            n = int((batch["sliding_labels"][:, 1:] != -100).sum())
            sliding_sum += model(**kw, labels=batch["sliding_labels"]).loss.item() * n
            sliding_n, tokens = sliding_n + n, tokens + int(batch["attention_mask"].sum())
    assert res.batch_losses == pytest.approx(losses, rel=1e-5)
    assert res.mean_loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(res.mean_loss))
    assert res.sliding_loss == pytest.approx(sliding_sum / sliding_n, rel=1e-5) and res.sliding_targets == sliding_n
    assert res.sliding_perplexity == pytest.approx(math.exp(res.sliding_loss))
    assert res.tokens == tokens and res.naive_targets > res.sliding_targets and res.tokens_per_s > 0
    assert "<sentiment_" in res.sample and "<|endoftext|>" in res.sample
    assert res.perplexity == pytest.approx(len(tokenizer), rel=0.2)  # a random model: about uniform


def test_evaluate_without_overlap_naive_equals_sliding_exactly(model, tokenizer, stream):
    res = streaming.evaluate(model, tokenizer, stream.take(20), block_size=16, stride=16, batch_size=4)
    assert res.naive_loss == res.sliding_loss and res.naive_targets == res.sliding_targets
    assert res.naive_perplexity == res.sliding_perplexity


def test_evaluate_max_batches_and_workers(model, tokenizer, stream):
    small = stream.take(40)
    kw = dict(block_size=32, stride=24, batch_size=4, docs_per_shard=5)
    full = streaming.evaluate(model, tokenizer, small, **kw)
    two = streaming.evaluate(model, tokenizer, small, num_workers=2, **kw)
    assert two.tokens == full.tokens and two.sliding_targets == full.sliding_targets
    assert two.sliding_loss == pytest.approx(full.sliding_loss, rel=1e-6)
    assert len(streaming.evaluate(model, tokenizer, small, max_batches=2, **kw).batch_losses) == 2


def test_evaluate_turns_dropout_off_and_restores_the_mode(model, tokenizer, stream):
    modes = []
    hook = model.base_model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    model.train()
    try:
        streaming.evaluate(model, tokenizer, stream.take(5), block_size=16, stride=16, batch_size=4)
        assert modes and not any(modes) and model.training  # eval mode inside (core.eval_mode), restored after
    finally:
        hook.remove()
        model.eval()


def test_evaluate_errors(model, tokenizer, stream):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        streaming.evaluate(model, tokenizer, stream, block_size=4096)
    with pytest.raises(ValueError, match="no blocks"):
        streaming.evaluate(model, tokenizer, stream.take(0))


# ---------------------------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_benchmark_runs_at_tiny_size():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "streaming_eval.py"), "--model-size", "tiny",
                           "--examples", "40", "--device", "cpu", "--batch-size", "16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokens/s" in proc.stdout and "speed-up (fast / original)" in proc.stdout
    diff = float(proc.stdout.split("fast - original): ")[1].split()[0])
    assert abs(diff) < 1e-4  # same blocks, both fp32 on CPU
