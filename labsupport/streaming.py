"""Lab 05: streaming language-model evaluation (GPT-Neo on poem_sentiment), one small function per stage.

    load_stream -> format_example -> build_tokenizer / tokenize_stream -> make_blocks / iter_blocks
    -> StreamingLMIterableDataset + collate_blocks -> load_model -> evaluate -> EvalResult

Blocks. Documents are tokenized, each followed by EOS, and read through a rolling buffer: a block is the
next `block_size` tokens, then the window moves on by `stride`, so consecutive blocks share
`block_size - stride` tokens (the overlap gives the later block's first predictions some context).
The final partial block (leftover tokens not in any earlier block) is kept, right-padded with attention
mask 0, so every token is evaluated; `drop_last=True` drops it instead.

Two perplexities. The naive block average scores every target of every block, so overlapping tokens are
counted again (this is what the original lab reported). The sliding-window one gives the overlap
positions of every block after the first label IGNORE_INDEX (-100), so each token of a shard is scored exactly once
(except its first, which has no context). With stride == block_size both are identical.

Shards. The stream is cut into shards of `docs_per_shard` consecutive documents; each shard is blocked on
its own (its first block starts a fresh context) and DataLoader worker w handles shards w, w+W, ...,
so no block is produced twice or lost and the blocks do not depend on the number of workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from labsupport import assets, precision
from labsupport.core import IGNORE_INDEX, eval_mode, perplexity
from labsupport.precision import fp32_logits
from labsupport.runtime import get_device

SENTIMENT_TOKENS = tuple(f"<sentiment_{i}>" for i in range(4))
COLUMNS = ("id", "verse_text", "label")

# ---------------------------------------------------------------------------------------------- stages 1-3


def load_stream(split: str = "train", profile: str | None = None) -> datasets.IterableDataset:
    """Stage 1: poem_sentiment as a `datasets` stream (hub parquet in `full`, generated fixture in smoke)."""
    return assets.load_dataset("poem_sentiment", split, streaming=True, profile=profile)


def format_example(example: dict[str, Any]) -> str:
    """Stage 2: ``{"verse_text": "the sea sings", "label": 1}`` -> ``"<sentiment_1> the sea sings"``."""
    label = int(example["label"])
    if not 0 <= label < len(SENTIMENT_TOKENS):
        raise ValueError(f"label must be 0-3 (poem_sentiment's classes), got {label}")
    return f"<sentiment_{label}> {example['verse_text']}"


def build_tokenizer(name: str = "gpt-neo-125M", profile: str | None = None):
    """Stage 3: GPT-Neo's GPT-2 BPE tokenizer with pad = EOS and the four <sentiment_k> special tokens."""
    tokenizer = assets.load_tokenizer(name, profile)
    tokenizer.pad_token = tokenizer.eos_token  # GPT-2 BPE has no pad token; padding is masked out anyway
    # transformers 5: extra special tokens go in under "additional_special_tokens" (stored as extra_special_tokens)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SENTIMENT_TOKENS)})
    return tokenizer


def tokenize_stream(stream: datasets.IterableDataset, tokenizer, batch_size: int = 1000,
                    batched: bool = True) -> datasets.IterableDataset:
    """Stage 3: a lazy stream of ``{"input_ids": [...]}``, one per example (formatted, no EOS yet).

    `batched=False` tokenizes example by example (the original recipe; same ids, slower).
    """
    missing = [c for c in ("verse_text", "label") if stream.column_names is not None and c not in stream.column_names]
    if missing:
        raise ValueError(f"stream lacks column(s) {missing}: pass poem_sentiment-shaped examples {COLUMNS}")

    def encode_batch(batch: dict[str, list]) -> dict[str, list[list[int]]]:
        texts = [format_example({"verse_text": t, "label": y}) for t, y in zip(batch["verse_text"], batch["label"])]
        return {"input_ids": tokenizer(texts)["input_ids"]}

    def encode_one(example: dict[str, Any]) -> dict[str, list[int]]:
        return {"input_ids": tokenizer(format_example(example))["input_ids"]}

    if batched:
        return stream.map(encode_batch, batched=True, batch_size=batch_size, remove_columns=stream.column_names)
    return stream.map(encode_one, remove_columns=stream.column_names)


# ---------------------------------------------------------------------------------------------- stage 4


def check_block_args(block_size: int, stride: int) -> None:
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2 (one input and one target), got {block_size}")
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and block_size ({block_size}), got {stride}")


def make_blocks(docs: Iterable[Sequence[int]], block_size: int, stride: int, eos_id: int) -> Iterator[list[int]]:
    """Stage 4: rolling buffer over documents (each followed by EOS) -> blocks of `block_size` token ids.

    Block k is stream[k*stride : k*stride + block_size]. A last, shorter block holds the leftover tokens when
    some of them were in no earlier block. Arguments are checked now, not at the first `next()`.
    """
    check_block_args(block_size, stride)

    def blocks() -> Iterator[list[int]]:
        buf: list[int] = []
        start, emitted = 0, False  # start: where the next block begins in buf
        for ids in docs:
            buf.extend(ids)
            buf.append(eos_id)
            while len(buf) - start >= block_size:
                yield buf[start : start + block_size]
                start += stride
                emitted = True
            del buf[:start]  # compact once per document: O(total tokens) overall
            start = 0
        if len(buf) > (block_size - stride if emitted else 0):  # some leftover token is in no block yet
            yield buf

    return blocks()


def _chunks(items: Iterable[Any], size: int | None) -> Iterator[Iterable[Any]]:
    """Consecutive lists of `size` items (None: everything as one lazy chunk)."""
    if size is None:
        yield items
        return
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def iter_blocks(docs: Iterable[Sequence[int]], block_size: int, stride: int, eos_id: int, pad_id: int,
                docs_per_shard: int | None = None, drop_last: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Block tensors: input_ids [T] (right-padded with `pad_id`), attention_mask [T], and overlap (scalar):
    how many leading positions the previous block of the same shard already scored (0 for a shard's first)."""
    check_block_args(block_size, stride)
    for shard in _chunks(docs, docs_per_shard):
        for i, ids in enumerate(make_blocks(shard, block_size, stride, eos_id)):
            n = len(ids)
            if n < block_size and drop_last:
                break
            input_ids = torch.full((block_size,), pad_id, dtype=torch.long)
            input_ids[:n] = torch.tensor(ids, dtype=torch.long)
            attention_mask = torch.zeros(block_size, dtype=torch.long)
            attention_mask[:n] = 1
            overlap = torch.tensor(0 if i == 0 else block_size - stride)
            yield {"input_ids": input_ids, "attention_mask": attention_mask, "overlap": overlap}


# ---------------------------------------------------------------------------------------------- stage 5


class StreamingLMIterableDataset(IterableDataset):
    """Blocks of a raw poem_sentiment stream, sharded over DataLoader workers by document shards.

    Worker w of W keeps shards w, w+W, ... (a cheap filter on raw examples, before tokenization), so
    workers tokenize in parallel and together yield exactly the blocks of a single-process pass.
    """

    def __init__(self, stream: datasets.IterableDataset | datasets.Dataset, tokenizer, block_size: int = 128,
                 stride: int = 96, docs_per_shard: int = 256, drop_last: bool = False,
                 tokenize_batch_size: int = 1000, batched_tokenization: bool = True):
        check_block_args(block_size, stride)
        if docs_per_shard < 1:
            raise ValueError(f"docs_per_shard must be at least 1, got {docs_per_shard}")
        if isinstance(stream, datasets.Dataset):
            stream = stream.to_iterable_dataset()
        self.stream, self.tokenizer, self.block_size, self.stride = stream, tokenizer, block_size, stride
        self.docs_per_shard, self.drop_last = docs_per_shard, drop_last
        self.tokenize_batch_size, self.batched_tokenization = tokenize_batch_size, batched_tokenization

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        stream, per_shard = self.stream, self.docs_per_shard
        if n_workers > 1:  # keep whole shards, so chunking the kept documents by per_shard finds them again
            stream = stream.filter(lambda batch, idx: [(i // per_shard) % n_workers == worker for i in idx],
                                   with_indices=True, batched=True, batch_size=per_shard)
        tokens = tokenize_stream(stream, self.tokenizer, self.tokenize_batch_size, self.batched_tokenization)
        # .iter(), not iter(): inside a worker, iter() of a `datasets` stream would shard it again by data files
        docs = (ids for batch in tokens.iter(batch_size=self.tokenize_batch_size) for ids in batch["input_ids"])
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        yield from iter_blocks(docs, self.block_size, self.stride, eos, pad, per_shard, self.drop_last)


def collate_blocks(blocks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack N blocks: input_ids, attention_mask, labels (padding -> IGNORE_INDEX; every real target, the naive
    scoring) and sliding_labels (also each block's overlap positions -> IGNORE_INDEX: every token scored once)."""
    input_ids = torch.stack([b["input_ids"] for b in blocks])  # [N, T]
    attention_mask = torch.stack([b["attention_mask"] for b in blocks])  # [N, T]
    overlap = torch.stack([b["overlap"] for b in blocks])  # [N]
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)  # by mask, not id: pad == EOS, a real target
    seen = torch.arange(input_ids.shape[1])[None, :] < overlap[:, None]  # [N, T]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "sliding_labels": labels.masked_fill(seen, IGNORE_INDEX)}


def make_dataloader(dataset: StreamingLMIterableDataset, batch_size: int = 64, num_workers: int = 0,
                    pin_memory: bool = False) -> DataLoader:
    if num_workers:
        # the tokenizer's Rust thread pool may already have run in this process; a forked worker would inherit
        # it locked, so tokenizers disables it there with a warning. Turn it off before forking, as it asks.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate_blocks, num_workers=num_workers,
                      pin_memory=pin_memory, prefetch_factor=4 if num_workers else None)


# ---------------------------------------------------------------------------------------------- stages 6-7


def load_model(tokenizer, name: str = "gpt-neo-125M", device: torch.device | str | None = None,
               profile: str | None = None):
    """Stage 6: GPTNeoForCausalLM (tiny random in smoke), embeddings resized for the new tokens, eval mode."""
    model = assets.load_causal_lm(name, profile)
    with assets.quiet_transformers():  # the expected note on how the new rows are initialised
        model.resize_token_embeddings(len(tokenizer))  # new rows start at the mean of the old ones
    return model.to(device or get_device()).eval()


def token_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, body=None,
              chunk_rows: int = 1024) -> torch.Tensor:
    """Per-position NLL (float32) of input_ids[:, 1:] given what precedes it: [N, T-1].

    The LM head and the softmax run on `chunk_rows` positions at a time, so the [N, T, vocab] logits (1.6 GB
    in fp32 for 64 blocks of 128 tokens and GPT-Neo's 50k vocabulary) never exist at once. `body`: the
    model's transformer (default `model.base_model`; pass a torch.compile'd one to speed it up).
    """
    body = model.base_model if body is None else body
    # use_cache=False: an evaluation never generates, so building a KV cache per batch is wasted work
    out = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state[:, :-1]  # [N, T-1, H]
    head = model.get_output_embeddings()
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), input_ids[:, 1:].reshape(-1)
    nll = [F.cross_entropy(fp32_logits(head, h), t, reduction="none")  # [rows, vocab] float32 logits, then [rows]
           for h, t in zip(flat_hidden.split(chunk_rows), flat_targets.split(chunk_rows))]
    return torch.cat(nll).view(input_ids.shape[0], -1)


perplexity_from_losses = perplexity  # the exercise's name (05.3); one implementation: labsupport.core.perplexity


def _progress(enabled: bool, items: Iterable[Any], desc: str) -> Iterable[Any]:
    if not enabled:
        return items
    return tqdm(items, desc=desc)


@dataclass
class EvalResult:
    batch_losses: list[float]  # naive loss of each batch (what model(..., labels=labels).loss returns)
    mean_loss: float  # mean of batch_losses: the original lab's "average loss"
    perplexity: float  # exp(mean_loss)
    naive_loss: float  # token-weighted over every target of every block (overlap counted again)
    naive_perplexity: float
    sliding_loss: float  # token-weighted, each token scored once
    sliding_perplexity: float
    tokens: int  # real tokens fed to the model (overlap included)
    naive_targets: int
    sliding_targets: int
    seconds: float  # end to end: data loading, tokenization and the model
    tokens_per_s: float
    sample: str = ""  # the first block, decoded
    settings: dict[str, Any] = field(default_factory=dict)


def evaluate(model, tokenizer, stream: datasets.IterableDataset | datasets.Dataset, *, block_size: int = 128,
             stride: int = 96, batch_size: int = 64, max_batches: int | None = None, num_workers: int | None = None,
             docs_per_shard: int = 256, drop_last: bool = False, amp: bool = True, compile: bool = False,
             progress: bool = False) -> EvalResult:
    """Stage 7, fast: batched tokenization in DataLoader workers, large batches, mixed precision where the
    project's policy allows it (`labsupport.precision.amp`: never for GPT-Neo, logits always float32), pinned
    memory with non-blocking copies and no host sync per batch on CUDA; optional torch.compile.

    Defaults on CUDA: num_workers=min(4, cpus - 1); on CPU/MPS: float32, num_workers=0. amp=False: float32.
    Dropout is off during the evaluation (core.eval_mode; the model's mode is restored afterwards).
    Not evaluation.evaluate: the blocks overlap, and the sliding-window loss counts only the targets no earlier
    block scored (`sliding_labels`), beside the naive and the per-batch means the lab compares it with.
    """
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    policy = precision.amp(device, training=False, model=model, enabled=amp)
    if num_workers is None:
        num_workers = max(0, min(4, (os.cpu_count() or 1) - 1)) if cuda else 0
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and block_size > max_pos:
        raise ValueError(f"block_size {block_size} exceeds the model's max_position_embeddings {max_pos}")
    dataset = StreamingLMIterableDataset(stream, tokenizer, block_size, stride, docs_per_shard, drop_last)
    body = torch.compile(model.base_model) if compile else model.base_model
    sums: list[torch.Tensor] = []  # per batch [5]: naive nll, naive targets, sliding nll, sliding targets, tokens
    sample = None
    start = time.perf_counter()
    loader = make_dataloader(dataset, batch_size, num_workers, pin_memory=cuda)
    with torch.inference_mode(), eval_mode(model), policy.autocast():
        for batch in _progress(progress, islice(loader, max_batches), "evaluating"):
            if sample is None:
                sample = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
            batch = {k: v.to(device, non_blocking=cuda) for k, v in batch.items()}
            nll = token_nll(model, batch["input_ids"], batch["attention_mask"], body)  # [N, T-1]
            naive = (batch["labels"][:, 1:] != IGNORE_INDEX).float()
            sliding = (batch["sliding_labels"][:, 1:] != IGNORE_INDEX).float()
            fed = batch["attention_mask"].sum().float()
            sums.append(torch.stack([(nll * naive).sum(), naive.sum(), (nll * sliding).sum(), sliding.sum(), fed]))
    if not sums:
        raise ValueError("the stream produced no blocks: is it empty?")
    per_batch = torch.stack(sums).double().cpu()  # the one host sync
    seconds = time.perf_counter() - start
    totals = per_batch.sum(0)
    if totals[1] == 0:
        raise ValueError("the stream has no token to predict: it needs at least 2 tokens")
    n_tokens = int(totals[4])
    has_targets = per_batch[:, 1] > 0
    batch_losses = (per_batch[has_targets, 0] / per_batch[has_targets, 1]).tolist()
    naive_loss, sliding_loss = (totals[0] / totals[1]).item(), (totals[2] / totals[3]).item()
    mean_loss = sum(batch_losses) / len(batch_losses)
    return EvalResult(
        batch_losses=batch_losses, mean_loss=mean_loss, perplexity=perplexity(mean_loss),
        naive_loss=naive_loss, naive_perplexity=perplexity(naive_loss),
        sliding_loss=sliding_loss, sliding_perplexity=perplexity(sliding_loss),
        tokens=n_tokens, naive_targets=int(totals[1]), sliding_targets=int(totals[3]), seconds=seconds,
        tokens_per_s=n_tokens / seconds, sample=tokenizer.decode(sample),
        settings=dict(block_size=block_size, stride=stride, batch_size=batch_size, num_workers=num_workers,
                      precision=policy.name, compile=compile, device=str(device)),
    )
