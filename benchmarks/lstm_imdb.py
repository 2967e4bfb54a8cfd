"""Benchmark: the Lab 06 LSTM training step vs the original recipe, in one run on the same device; both train
with labsupport.trainer.Trainer (the one training loop), so only the recipes differ.

    lab recipe:      the precision policy (labsupport.precision.amp; the LSTM stays float32), batch 128, bucketing
    original recipe: float32, batch 32, every review padded to 258 tokens, random batches (no bucketing)

Both train the same model (`LSTMLanguageModel` default config: embedding 300, LSTM 256; `--small`: 32/32) from
the same initial weights on the same reviews, with the pad-ignoring loss. The script prints the training
throughput (reviews per second) of each recipe and their ratio. With ``--epochs N`` each recipe trains N full
epochs (throughput then includes data loading); ``--eval`` adds the test perplexity (non-pad tokens, float32).

How to run (repository root; the data come from the active labsupport profile, e.g. LABSUPPORT_PROFILE=offline):

    .venv/bin/python benchmarks/lstm_imdb.py                        # throughput on the default device (GPU if any)
    .venv/bin/python benchmarks/lstm_imdb.py --epochs 1 --eval      # + test perplexity after one epoch of each
    .venv/bin/python benchmarks/lstm_imdb.py --small                # CPU-sized run, under a minute
    .venv/bin/python benchmarks/lstm_imdb.py --device cpu --reviews 2000 --steps 10
"""

from __future__ import annotations

import argparse
import copy
import time
from itertools import islice

import torch
from torch.utils.data import DataLoader

from labsupport import lstm
from labsupport.assets import load_dataset, missing_offline_packages
from labsupport.evaluation import evaluate
from labsupport.precision import amp
from labsupport.runtime import get_device, resolve_profile, seed_everything
from labsupport.textdata import WordVocab, encode_documents
from labsupport.trainer import Trainer

MAX_LEN = 258
RECIPES = {  # name: (batch size, bucketing, bf16 autocast on CUDA, learning rate, gradient clipping)
    "original": dict(batch_size=32, bucket=False, amp=False, lr=1e-3, grad_clip=None),
    "lab": dict(batch_size=128, bucket=True, amp=True, lr=2e-3, grad_clip=1.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="cpu, cuda, mps (default: labsupport.get_device())")
    p.add_argument("--reviews", type=int, help="training reviews to use (default: all; --small: 300)")
    p.add_argument("--test-reviews", type=int, default=2000, help="test reviews for --eval (default 2000)")
    p.add_argument("--steps", type=int, help="timed training steps per recipe when --epochs is 0 (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per recipe first, on a copy (default 3)")
    p.add_argument("--epochs", type=int, default=0, help="train each recipe this many full epochs (default 0)")
    p.add_argument("--eval", action="store_true", help="report the test perplexity of each recipe")
    p.add_argument("--small", action="store_true", help="small model and data: runs on a CPU in under a minute")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.reviews is None:
        args.reviews = 300 if args.small else None
    if args.steps is None:
        args.steps = 8 if args.small else 30
    if args.small:
        args.test_reviews = min(args.test_reviews, 100)
    if args.eval and args.epochs == 0:
        p.error("--eval needs --epochs N (>= 1): perplexity after a few timed steps means little")
    return args


def load_texts(split: str, n: int | None, seed: int) -> list[str]:
    ds = load_dataset("imdb", split)
    if n is not None and n < len(ds):
        ds = ds.shuffle(seed=seed).select(range(n))  # the splits are sorted by label
    return [lstm.clean_review(t) for t in ds["text"]]


def take_batches(loader, n: int) -> DataLoader:
    """The first `n` collated batches (going through further epochs when one epoch has fewer), as a DataLoader
    that yields them as they are: the Trainer then trains one epoch of exactly these batches."""
    out, epoch = [], 0
    while len(out) < n:
        loader.batch_sampler.set_epoch(epoch)
        out += list(islice(iter(loader), n - len(out)))
        epoch += 1
    return DataLoader(out, batch_size=None)


def trainer_for(model, data: DataLoader, recipe: dict, device: torch.device, epochs: int = 1) -> Trainer:
    """labsupport's Trainer with the recipe: Adam (AdamW without decay), its precision and clipping, quiet."""
    config = Trainer.get_default_config()
    config.merge_from_dict(dict(device=str(device), max_epochs=epochs, learning_rate=recipe["lr"], betas=(0.9, 0.999),
                                weight_decay=0.0, amp=recipe["amp"], grad_norm_clip=recipe["grad_clip"],
                                progress=False))
    return Trainer(config, model, data)


def train_seconds(trainer: Trainer) -> float:
    """Wall-clock seconds of trainer.run(), up to the last step's loss on the host (a device sync)."""
    start = time.perf_counter()
    trainer.run()
    trainer.losses  # noqa: B018 -- copies the pending losses to the host: waits for the device
    return time.perf_counter() - start


def warm_up(model, loader, recipe: dict, steps: int, device: torch.device) -> None:
    """Untimed steps on a throwaway copy: first-call allocations, cuDNN/oneDNN setup, autotuning."""
    if steps > 0:
        trainer_for(copy.deepcopy(model), take_batches(loader, steps), recipe, device).run()


def steps_throughput(model, loader, recipe: dict, steps: int, device: torch.device) -> float:
    """Reviews per second over `steps` pre-collated batches (collation is not timed)."""
    batches = take_batches(loader, steps)
    samples = sum(x.size(0) for x, _ in batches)
    return samples / train_seconds(trainer_for(model, batches, recipe, device))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device) if args.device else get_device()
    profile, _ = resolve_profile(missing_offline=missing_offline_packages)
    seed_everything(args.seed)
    start = time.perf_counter()
    train_texts = load_texts("train", args.reviews, args.seed)
    vocab = WordVocab.build(train_texts, min_freq=6, lowercase=True)
    ids = encode_documents(train_texts, vocab, MAX_LEN)
    fixed = encode_documents(train_texts, vocab, MAX_LEN, pad_to=MAX_LEN)  # the original recipe's tensor rows
    test_loader = None
    if args.eval:
        test_ids = encode_documents(load_texts("test", args.test_reviews, args.seed), vocab, MAX_LEN)
        test_loader = lstm.make_loader(test_ids, 64, shuffle=False)
    config = lstm.LSTMLanguageModel.get_default_config()
    config.vocab_size = len(vocab)
    if args.small:
        config.embed_dim, config.hidden_size = 32, 32
    torch.manual_seed(args.seed)
    init = lstm.LSTMLanguageModel(config).to(device)
    print(f"device {device} | profile {profile} | {len(train_texts):,} reviews, vocabulary {len(vocab):,} | "
          f"model {init.num_parameters():,} parameters | data ready in {time.perf_counter() - start:.1f} s")

    results = {}
    for name, recipe in RECIPES.items():
        seqs = fixed if name == "original" else ids
        loader = lstm.make_loader(seqs, recipe["batch_size"], bucket=recipe["bucket"], seed=args.seed,
                                  pin_memory=device.type == "cuda")
        model = copy.deepcopy(init)
        warm_up(model, loader, recipe, args.warmup, device)
        trainer = trainer_for(model, loader, recipe, device, epochs=args.epochs)
        policy = amp(device, model=model, enabled=recipe["amp"])
        line = f"{name:>8}: batch {recipe['batch_size']:>3}, bucketing {'on ' if recipe['bucket'] else 'off'}, " \
               f"{policy.name if policy.dtype else 'float32'}"
        if args.epochs:
            rate = args.epochs * len(seqs) / train_seconds(trainer)
            if args.eval:
                ppl = evaluate(model, test_loader, amp=False)["perplexity"]
                line += f" | test perplexity after {args.epochs} epoch(s): {ppl:.1f}"
        else:
            rate = steps_throughput(model, loader, recipe, args.steps, device)
        results[name] = rate
        print(f"{line} | {rate:,.1f} reviews/s")
    print(f"speed-up lab / original: {results['lab'] / results['original']:.2f}x on {device}")


if __name__ == "__main__":
    main()
