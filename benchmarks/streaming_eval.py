"""Benchmark: Lab 05's original evaluation recipe vs the fast streaming evaluator (`labsupport.streaming.evaluate`).

Both run in this process, on the same device, the same random-weight model and the same stream of verses, and
score the same blocks; the script prints end-to-end tokens/s (data loading, tokenization and the model) of
each, their ratio, and how far their mean losses are apart (numerics only: bf16 vs fp32).

    original: fp32, batch 4, per-example tokenization, eager, no workers, loss.item() every batch
    fast:     bf16 autocast (CUDA), batch 64, batched tokenization, DataLoader workers, pinned memory,
              non-blocking copies, one host sync at the end, optional torch.compile

Run (no hub needed: GPT-2 BPE is vendored, the model is a random GPTNeoConfig):

    python benchmarks/streaming_eval.py --model-size tiny --examples 200      # CPU smoke test, seconds
    python benchmarks/streaming_eval.py --device cuda --examples 20000        # GPT-Neo-125M shape
    python benchmarks/streaming_eval.py --device cuda --examples 20000 --compile
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after the tokenizer is used

import datasets  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import GPTNeoConfig, GPTNeoForCausalLM  # noqa: E402

from labsupport import fixtures, streaming  # noqa: E402
from labsupport.runtime import get_device, seed_everything  # noqa: E402

SIZES = {
    "125m": dict(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]],
                 window_size=256, max_position_embeddings=2048),
    "tiny": dict(hidden_size=32, num_layers=2, num_heads=2, attention_types=[[["global", "local"], 1]],
                 window_size=64, max_position_embeddings=256),
}


def verse_stream(n: int) -> datasets.IterableDataset:
    """`n` poem_sentiment-shaped examples (the smoke fixture's verses, cycled), as a one-shard stream."""
    base = fixtures.smoke_poem_sentiment("train")
    rows = [base[i % len(base)] for i in range(n)]
    ds = datasets.Dataset.from_dict({"id": list(range(n)), "verse_text": [r["verse_text"] for r in rows],
                                     "label": [r["label"] for r in rows]}, features=base.features)
    return ds.to_iterable_dataset()


def build_model(size: str, vocab_size: int, device: torch.device) -> GPTNeoForCausalLM:
    seed_everything(0)
    return GPTNeoForCausalLM(GPTNeoConfig(vocab_size=vocab_size, **SIZES[size])).to(device).eval()


def original_recipe(model, tokenizer, stream, block_size: int, stride: int, docs_per_shard: int) -> dict:
    """The lab's first version: per-example map, batch 4, fp32, eager, `loss.item()` after every batch."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    dataset = streaming.StreamingLMIterableDataset(stream, tokenizer, block_size, stride, docs_per_shard,
                                                   batched_tokenization=False)
    losses, targets, tokens = [], [], 0
    with torch.inference_mode():
        for batch in DataLoader(dataset, batch_size=4, collate_fn=streaming.collate_blocks):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
            losses.append(out.loss.item())
            targets.append(int((batch["labels"][:, 1:] != -100).sum()))
            tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - start
    naive_loss = sum(l * n for l, n in zip(losses, targets)) / sum(targets)
    return dict(tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds, naive_loss=naive_loss,
                mean_loss=sum(losses) / len(losses))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-size", choices=sorted(SIZES), default="125m")
    parser.add_argument("--examples", type=int, default=2000, help="verses in the stream (default 2000)")
    parser.add_argument("--device", default=None, help="default: cuda > mps > cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model in the fast evaluator")
    parser.add_argument("--batch-size", type=int, default=64, help="fast evaluator's batch size (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="fast evaluator's DataLoader workers")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--docs-per-shard", type=int, default=256)
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error(f"--examples must be at least 1, got {args.examples}")

    device = get_device(args.device)
    tokenizer = streaming.build_tokenizer("gpt2-tokenizer", profile="smoke")  # GPT-Neo uses GPT-2 BPE (vendored)
    model = build_model(args.model_size, len(tokenizer), device)
    stream = verse_stream(args.examples)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device {device} | GPT-Neo {args.model_size} ({n_params / 1e6:.1f}M params, random weights) | "
          f"{args.examples} verses | block {args.block_size}, stride {args.stride}")
    with torch.inference_mode():  # warm-up (kernels, allocator) so neither recipe pays it alone
        model(input_ids=torch.zeros(2, args.block_size, dtype=torch.long, device=device))

    shape = dict(block_size=args.block_size, stride=args.stride, docs_per_shard=args.docs_per_shard)
    orig = original_recipe(model, tokenizer, stream, **shape)
    fast = streaming.evaluate(model, tokenizer, stream, batch_size=args.batch_size, num_workers=args.workers,
                              compile=args.compile, **shape)
    s = fast.settings
    print(f"original (fp32, batch 4, per-example tokenization, eager): {orig['tokens_per_s']:>12,.0f} tokens/s "
          f"({orig['tokens']:,} tokens in {orig['seconds']:.2f} s), mean loss {orig['naive_loss']:.5f}")
    print(f"fast ({s['precision']}, batch {s['batch_size']}, batched tokenization, "
          f"{s['num_workers']} workers{', compiled' if s['compile'] else ''}): {fast.tokens_per_s:>12,.0f} tokens/s "
          f"({fast.tokens:,} tokens in {fast.seconds:.2f} s), mean loss {fast.naive_loss:.5f}")
    if fast.tokens != orig["tokens"]:
        raise SystemExit(f"error: the recipes saw different streams ({orig['tokens']} vs {fast.tokens} tokens)")
    diff = fast.naive_loss - orig["naive_loss"]
    print(f"speed-up (fast / original): {fast.tokens_per_s / orig['tokens_per_s']:.2f}x | mean loss difference "
          f"(token-weighted, fast - original): {diff:+.2e} | perplexity {math.exp(orig['naive_loss']):,.1f} "
          f"vs {fast.naive_perplexity:,.1f} (random weights: about the vocabulary size)")


if __name__ == "__main__":
    main()
