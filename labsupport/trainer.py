"""A small, resumable training loop (after minGPT's Trainer).

    train_config = Trainer.get_default_config()
    train_config.max_iters = 2000
    trainer = Trainer(train_config, model, train_dataset)   # datasets yield (x, y) tensor pairs
    trainer.add_callback("on_batch_end", lambda tr: tr.iter_num % 100 == 0 and tr.save("ckpt.pt"))
    trainer.run()

`save(path)` writes model, optimizer, all RNG states and the data position atomically; after a crash
`trainer.resume(path); trainer.run()` continues and produces the same losses as a run never stopped.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from labsupport.config import CfgNode
from labsupport.core import eval_mode
from labsupport.gpt import make_adamw
from labsupport.io import atomic_torch_save
from labsupport.precision import Precision, amp, backward_step
from labsupport.runtime import get_device, rng_state, seed_everything, set_rng_state

EVENTS = ("on_batch_end", "on_eval")
CHECKPOINT_VERSION = 1
SYNC_EVERY = 50  # on CUDA, copy losses to the host every this many steps (not every step)


class RandomBatchSampler(Sampler[list[int]]):
    """Endless batches of indices drawn with replacement; batch k depends only on (seed, k).

    Because no state is carried from one batch to the next, resuming at batch k (`start=k`) yields
    exactly the batches an uninterrupted run would have seen, even with DataLoader workers prefetching.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, start: int = 0):
        if n <= 0:
            raise ValueError("the training dataset is empty")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            rng = np.random.default_rng([self.seed, k])  # independent stream per (seed, batch index)
            yield rng.integers(self.n, size=self.batch_size).tolist()
            k += 1


def random_batches(dataset: Dataset, batch_size: int, seed: int = 0, start: int = 0, num_workers: int = 0,
                   pin_memory: bool = False) -> DataLoader:
    """An endless DataLoader of random batches (RandomBatchSampler): batch k depends only on (seed, k), so
    `start=k` resumes exactly. It has a private generator: iterating it never consumes the global torch RNG."""
    sampler = RandomBatchSampler(len(dataset), batch_size, seed, start)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed))


class Trainer:
    """Trains `model` (called as `model(x, y) -> (logits, loss)`) on a map-style dataset of (x, y) pairs.

    The optimizer comes from `model.configure_optimizers(config)` when the model has it, else from
    `labsupport.gpt.make_adamw`.
    """

    @staticmethod
    def get_default_config() -> CfgNode:
        C = CfgNode()
        C.device = "auto"  # "auto": labsupport.runtime.get_device() (cuda > mps > cpu)
        C.num_workers = 0  # DataLoader worker processes
        C.batch_size = 64
        C.learning_rate = 3e-4
        C.betas = (0.9, 0.95)
        C.weight_decay = 0.1  # only on Linear weights (see GPT.configure_optimizers)
        C.grad_norm_clip = 1.0  # None: no clipping
        C.max_iters = None  # None: run until interrupted
        C.seed = 0  # seeds python/numpy/torch at construction and the data order
        C.progress = True  # tqdm progress bar with the running loss
        C.amp = True  # mixed precision as labsupport.precision.amp decides (bf16 / fp16 + scaler / fp32)
        C.eval_interval = None  # evaluate on eval_dataset every this many iterations (None: never)
        C.eval_iters = 10  # batches per evaluation (the same batches every time)
        return C

    def __init__(self, config: CfgNode, model: torch.nn.Module, train_dataset: Dataset,
                 eval_dataset: Dataset | None = None):
        for key, value in Trainer.get_default_config().to_dict().items():  # fill in settings the caller left out
            if key not in config:
                setattr(config, key, value)
        self.config = config  # the caller's object, so changing e.g. config.max_iters later takes effect
        self.model = model
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.device = get_device() if self.config.device == "auto" else torch.device(self.config.device)
        self.model.to(self.device)
        print(f"running on device {self.device}")
        self.callbacks: dict[str, list[Callable[[Trainer], Any]]] = defaultdict(list)
        self.optimizer: torch.optim.Optimizer | None = None

        self.iter_num = 0  # optimizer steps done so far (also: how many batches were consumed)
        self.iter_time = time.time()
        self.iter_dt = 0.0  # seconds taken by the last iteration
        self.loss: torch.Tensor | None = None  # last training loss (detached)
        self._losses: list[float] = []  # training loss of every iteration (see the `losses` property)
        self._pending: list[torch.Tensor] = []  # losses still on the device
        self.eval_loss: float | None = None
        self.eval_losses: list[tuple[int, float]] = []  # (iter_num, eval loss)
        seed_everything(self.config.seed)

    @property
    def losses(self) -> list[float]:
        """Training loss of every iteration. On CUDA the values are copied to the host in groups (a per-step
        `.item()` would make the CPU wait for the GPU every step); reading this property flushes them."""
        if self._pending:
            self._losses.extend(torch.stack(self._pending).float().cpu().tolist())
            self._pending.clear()
        return self._losses

    @losses.setter
    def losses(self, values: list[float]) -> None:
        self._pending.clear()
        self._losses = list(values)

    # ------------------------------------------------------------------------------------------ callbacks

    def _check_event(self, event: str) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")

    def add_callback(self, event: str, fn: Callable[[Trainer], Any]) -> None:
        """Call `fn(trainer)` on `event` ("on_batch_end" after each step, "on_eval" after each evaluation)."""
        self._check_event(event)
        self.callbacks[event].append(fn)

    def trigger_callbacks(self, event: str) -> None:
        for fn in self.callbacks.get(event, []):
            fn(self)

    # ------------------------------------------------------------------------------------------ training

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            configure = getattr(self.model, "configure_optimizers", None)
            self.optimizer = configure(self.config) if configure else make_adamw(self.model, self.config)
        return self.optimizer

    def _precision(self, training: bool) -> Precision:
        if not self.config.amp:
            return Precision(self.device.type, None, False, "float32: config.amp is off")
        return amp(self.device, training=training, model=self.model)

    def _loader(self, dataset: Dataset, seed: int, start: int) -> DataLoader:
        return random_batches(dataset, self.config.batch_size, seed, start, num_workers=self.config.num_workers,
                              pin_memory=self.device.type == "cuda")

    def run(self) -> None:
        """Train until iter_num reaches config.max_iters; calling it again (or after resume) continues."""
        model, config = self.model, self.config
        optimizer = self._get_optimizer()
        data = iter(self._loader(self.train_dataset, config.seed, start=self.iter_num))
        model.train()
        precision = self._precision(training=True)
        scaler = precision.grad_scaler()
        bar = tqdm(total=config.max_iters, initial=self.iter_num, disable=not config.progress, desc="training")
        self.iter_time = time.time()
        try:
            while config.max_iters is None or self.iter_num < config.max_iters:
                x, y = (t.to(self.device, non_blocking=True) for t in next(data))
                with precision.autocast():
                    _, loss = model(x, y)
                model.zero_grad(set_to_none=True)
                backward_step(loss, optimizer, scaler, model.parameters(), config.grad_norm_clip)

                self.iter_num += 1
                self.loss = loss.detach()
                self._pending.append(self.loss)
                now = time.time()
                self.iter_dt, self.iter_time = now - self.iter_time, now
                bar.update(1)
                if self.device.type != "cuda" or len(self._pending) >= SYNC_EVERY:
                    bar.set_postfix(loss=f"{self.losses[-1]:.4f}", refresh=False)
                if config.eval_interval and self.eval_dataset is not None and self.iter_num % config.eval_interval == 0:
                    self.evaluate()
                self.trigger_callbacks("on_batch_end")
        finally:
            bar.close()

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over config.eval_iters fixed batches of eval_dataset (dropout off); fires "on_eval"."""
        if self.eval_dataset is None:
            raise ValueError("no eval_dataset: pass one to Trainer(config, model, train_dataset, eval_dataset)")
        with eval_mode(self.model):
            data = iter(self._loader(self.eval_dataset, seed=self.config.seed + 1, start=0))
            total = torch.zeros((), device=self.device)
            precision = self._precision(training=False)
            for _ in range(self.config.eval_iters):
                x, y = (t.to(self.device) for t in next(data))
                with precision.autocast():
                    total += self.model(x, y)[1].float()
        self.eval_loss = total.item() / self.config.eval_iters
        self.eval_losses.append((self.iter_num, self.eval_loss))
        self.trigger_callbacks("on_eval")
        return self.eval_loss

    # ------------------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self._get_optimizer().state_dict(),
            "iter_num": self.iter_num,
            "losses": list(self.losses),
            "eval_losses": list(self.eval_losses),
            # batch k depends only on (seed, k), so the position in the data stream is iter_num
            "sampler": {"seed": self.config.seed, "batch_size": self.config.batch_size, "position": self.iter_num},
            "rng": rng_state(),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint everything needed to continue exactly; written atomically (never half a file)."""
        atomic_torch_save(self.state_dict(), path)

    def resume(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by `save`; the next `run()` continues from its iter_num."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path} is not a labsupport Trainer checkpoint (version {ckpt.get('version')!r})")
        sampler = ckpt["sampler"]
        if (sampler["seed"], sampler["batch_size"]) != (self.config.seed, self.config.batch_size):
            raise ValueError(f"checkpoint was trained with seed={sampler['seed']}, batch_size={sampler['batch_size']}"
                             f"; set the same in the config (have seed={self.config.seed}, "
                             f"batch_size={self.config.batch_size}) to continue the same run")
        self.model.load_state_dict(ckpt["model"])
        self._get_optimizer().load_state_dict(ckpt["optimizer"])
        self.iter_num = ckpt["iter_num"]
        self.losses = list(ckpt["losses"])
        self.eval_losses = [tuple(e) for e in ckpt["eval_losses"]]
        self.loss = torch.tensor(self.losses[-1]) if self.losses else None
        set_rng_state(ckpt["rng"])
