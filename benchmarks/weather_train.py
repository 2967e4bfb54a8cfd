"""Benchmark: Lab 03's training loop (labsupport Trainer) vs a plain minGPT-style loop, iterations/s on one device.

Both train gpt-nano (dropout off, as in the lab) on the same WeatherDataset with the same initial weights, batch
size and AdamW settings, in this process, alternating in rounds so that a busy machine slows both alike; the
script prints each loop's best-round iterations/s and their ratio (lab / plain).

    lab:    labsupport.trainer.Trainer as Lab 03 runs it: bf16 autocast (CUDA only), RandomBatchSampler batches
            through a DataLoader (pinned memory on CUDA), gradient clipping, loss.item() and a tqdm update per step
    plain:  fp32, no autocast, one DataLoader(RandomSampler(replacement=True)) iterator, gradient clipping,
            no host sync per step (minGPT's Trainer reads the loss only when a callback prints it)

`--breakdown` also times the lab loop without its progress bar and each data path alone, to say where a
difference comes from.

Run:

    python benchmarks/weather_train.py                       # CPU, ~30 s
    python benchmarks/weather_train.py --threads 1 --breakdown
    python benchmarks/weather_train.py --device cuda --iters 2000
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

from labsupport.gpt import GPT
from labsupport.runtime import get_device, seed_everything
from labsupport.trainer import Trainer, random_batches
from labsupport.weather import FIXED_PROBA, WeatherDataset

SEQ_LEN, LR = 6, 3e-3


def make_model(device: torch.device) -> GPT:
    seed_everything(0)  # the same initial weights for both loops
    config = GPT.get_default_config()
    config.merge_from_dict(dict(model_type="gpt-nano", vocab_size=8, block_size=2 * SEQ_LEN - 1,
                                embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    return GPT(config).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LabLoop:
    """The lab's Trainer, advanced `n` iterations per call (run() continues where it stopped)."""

    def __init__(self, dataset, device: torch.device, batch_size: int, progress: bool):
        config = Trainer.get_default_config()
        config.merge_from_dict(dict(device=str(device), batch_size=batch_size, learning_rate=LR, max_iters=0,
                                    progress=progress))
        self.trainer = Trainer(config, make_model(device), dataset)

    def __call__(self, n: int) -> None:
        self.trainer.config.max_iters += n
        self.trainer.run()


class PlainLoop:
    """minGPT's training loop: fp32, one endless DataLoader iterator, no per-step .item()."""

    def __init__(self, dataset, device: torch.device, batch_size: int):
        self.model, self.device = make_model(device), device
        config = Trainer.get_default_config()
        config.learning_rate = LR
        self.optimizer = self.model.configure_optimizers(config)  # the same AdamW groups as the Trainer's
        sampler = RandomSampler(dataset, replacement=True, num_samples=10**10)
        self.data = iter(DataLoader(dataset, sampler=sampler, batch_size=batch_size))
        self.model.train()

    def __call__(self, n: int) -> None:
        for _ in range(n):
            x, y = (t.to(self.device) for t in next(self.data))
            _, loss = self.model(x, y)
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()


def best_rate(loops: dict, iters: int, rounds: int, device: torch.device) -> dict[str, float]:
    """Iterations/s of each loop: the best of `rounds` rounds of iters/rounds steps, loops interleaved."""
    for loop in loops.values():  # warm-up (allocator, kernels, lazy init)
        loop(5)
    sync(device)
    best = dict.fromkeys(loops, 0.0)
    per_round = max(iters // rounds, 1)
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(per_round)
            sync(device)
            best[name] = max(best[name], per_round / (time.perf_counter() - start))
    return best


def data_rate(batches, n: int) -> float:
    start = time.perf_counter()
    for _ in itertools.islice(batches, n):
        pass
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: labsupport.get_device())")
    parser.add_argument("--iters", type=int, default=400, help="timed iterations per loop (default 400)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--breakdown", action="store_true", help="also time the lab loop without tqdm, and data alone")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    dataset = WeatherDataset("train", seq_len=SEQ_LEN, num_instances=20_000, proba=FIXED_PROBA)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.iters} timed iterations per loop in {args.rounds} rounds")

    loops = {"lab (Trainer)": LabLoop(dataset, device, args.batch_size, progress=True),
             "plain (minGPT)": PlainLoop(dataset, device, args.batch_size)}
    if args.breakdown:
        loops["lab, progress=False"] = LabLoop(dataset, device, args.batch_size, progress=False)
    rates = best_rate(loops, args.iters, args.rounds, device)
    print()
    for name, rate in rates.items():
        print(f"{name:<22} {rate:8.1f} it/s  {rate * args.batch_size:9.0f} sequences/s")
    print(f"ratio lab / plain: {rates['lab (Trainer)'] / rates['plain (minGPT)']:.2f}x")

    if args.breakdown:
        lab_data = iter(random_batches(dataset, args.batch_size, seed=1, pin_memory=device.type == "cuda"))
        plain_data = iter(DataLoader(dataset, sampler=RandomSampler(dataset, replacement=True, num_samples=10**10),
                                     batch_size=args.batch_size))
        n = max(args.iters, 200)
        lab_rate, plain_rate = data_rate(lab_data, n), data_rate(plain_data, n)
        print(f"data path alone: lab {lab_rate:.0f} batches/s, plain {plain_rate:.0f} batches/s "
              f"({1e3 / lab_rate:.2f} vs {1e3 / plain_rate:.2f} ms per batch)")


if __name__ == "__main__":
    main()
