"""The one training loop of every lab model (after minGPT's Trainer), resumable, and its optimizer recipe
(`make_adamw`). Evaluation is `labsupport.evaluation.evaluate`, checkpoints are `labsupport.checkpoint`'s.

    train_config = Trainer.get_default_config()
    train_config.max_iters = 2000
    trainer = Trainer(train_config, model, train_dataset)   # datasets yield (x, y) tensor pairs
    trainer.add_callback("on_batch_end", lambda tr: tr.iter_num % 100 == 0 and tr.save("ckpt.pt"))
    trainer.run()

A dataset is read as endless random batches (`random_batches`; `collate_fn` pads ragged items). A
`DataLoader` is read as it is, epoch after epoch (config.max_epochs), e.g. Lab 06's length-bucketed loader:

    train_config.max_epochs, train_config.eval_interval, train_config.eval_iters = 5, "epoch", None
    trainer = Trainer(train_config, model, train_loader, test_loader)
    trainer.add_callback("on_epoch_end", lambda tr: tr.save("ckpt.pt"))   # tr.epoch_losses, tr.eval_losses

Models are called as `model(x, y) -> (logits, loss)`, the loss a mean over the targets that are not
IGNORE_INDEX; precision comes from `labsupport.precision.amp`.

`save(path)` writes model, optimizer, all RNG states and the data position atomically; after a crash
`trainer.resume(path); trainer.run()` continues and produces the same losses as a run never stopped.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from labsupport.checkpoint import load_checkpoint, save_checkpoint
from labsupport.config import CfgNode
from labsupport.core import IGNORE_INDEX
from labsupport.evaluation import evaluate
from labsupport.precision import Precision, amp, backward_step
from labsupport.runtime import get_device, seed_everything

EVENTS = ("on_batch_end", "on_eval", "on_epoch_end")
SYNC_EVERY = 50  # on CUDA, copy losses to the host every this many steps (not every step)


def make_adamw(model: nn.Module, train_config: CfgNode) -> torch.optim.AdamW:
    """AdamW with two groups: Linear weights decay (train_config.weight_decay), all other parameters do not.

    Decaying biases, LayerNorm gains or embeddings would pull them towards 0, which is not a useful prior.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in seen:  # a tied matrix (GPT-2's wte = lm_head) joins one group, the first it meets
                seen.add(id(p))
                (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": train_config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=train_config.learning_rate, betas=tuple(train_config.betas))


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
                   pin_memory: bool = False, collate_fn: Callable[[list], Any] | None = None) -> DataLoader:
    """An endless DataLoader of random batches (RandomBatchSampler): batch k depends only on (seed, k), so
    `start=k` resumes exactly. It has a private generator: iterating it never consumes the global torch RNG.
    `collate_fn`: a list of items -> a batch (default: stack them, which needs items of one shape)."""
    sampler = RandomBatchSampler(len(dataset), batch_size, seed, start)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=collate_fn, generator=torch.Generator().manual_seed(seed))


class Trainer:
    """Trains `model` (called as `model(x, y) -> (logits, loss)`) on (x, y) batches.

    `train_dataset`: a map-style dataset of (x, y) items, read as endless random batches of config.batch_size
    (batch k depends only on (seed, k); `collate_fn` builds a batch from ragged items), or a `DataLoader`, read
    in its own order one epoch after another (its sampler's `set_epoch(epoch)` is called when it has one, as
    `textdata.BucketBatchSampler` does; an exact resume in the middle of an epoch needs such a loader, whose
    order depends only on the epoch). `eval_dataset` likewise (a dataset: config.eval_iters fixed random
    batches; a DataLoader: its first config.eval_iters batches, None: all of them).
    The optimizer comes from `model.configure_optimizers(config)` when the model has it, else from `make_adamw`
    (with weight_decay=0 and betas=(0.9, 0.999) it is plain Adam).
    """

    @staticmethod
    def get_default_config() -> CfgNode:
        C = CfgNode()
        C.device = "auto"  # "auto": labsupport.runtime.get_device() (cuda > mps > cpu)
        C.num_workers = 0  # DataLoader worker processes
        C.batch_size = 64
        C.learning_rate = 3e-4
        C.betas = (0.9, 0.95)
        C.weight_decay = 0.1  # only on Linear weights (see make_adamw)
        C.grad_norm_clip = 1.0  # None: no clipping
        C.max_iters = None  # None: run until interrupted (or until max_epochs)
        C.max_epochs = None  # a DataLoader as train data: stop after this many passes over it (None: no limit)
        C.seed = 0  # seeds python/numpy/torch at construction and the data order
        C.progress = True  # tqdm progress bar with the running loss
        C.amp = True  # mixed precision as labsupport.precision.amp decides (bf16 / fp16 + scaler / fp32)
        C.eval_interval = None  # evaluate every this many iterations, "epoch": after each epoch (None: never)
        C.eval_iters = 10  # batches per evaluation (the same batches every time); None: a whole eval DataLoader
        return C

    def __init__(self, config: CfgNode, model: torch.nn.Module, train_dataset: Dataset | DataLoader,
                 eval_dataset: Dataset | DataLoader | None = None, *,
                 collate_fn: Callable[[list], Any] | None = None):
        for key, value in Trainer.get_default_config().to_dict().items():  # fill in settings the caller left out
            if key not in config:
                setattr(config, key, value)
        self.config = config  # the caller's object, so changing e.g. config.max_iters later takes effect
        self.model = model
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.collate_fn = collate_fn  # for the random batches of a dataset (a DataLoader brings its own)
        self.epochs = isinstance(train_dataset, DataLoader)  # True: epochs over the loader; False: random batches
        if config.max_epochs is not None and not self.epochs:
            raise ValueError("config.max_epochs needs a DataLoader as train data (a dataset is read as endless "
                             "random batches: set config.max_iters)")
        if config.eval_interval == "epoch" and not self.epochs:
            raise ValueError('config.eval_interval = "epoch" needs a DataLoader as train data')
        self.device = get_device() if self.config.device == "auto" else torch.device(self.config.device)
        self.model.to(self.device)
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
        # epochs over a DataLoader: completed epochs, batches done in the current one, and the token-weighted
        # mean training loss of each completed epoch (targets that are not IGNORE_INDEX count once)
        self.epoch = 0
        self.epoch_step = 0
        self.epoch_losses: list[float] = []
        self._epoch_nll = torch.zeros((), dtype=torch.float64)  # summed NLL of this epoch (on the device in run)
        self._epoch_count = 0  # targets of this epoch
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
        """Call `fn(trainer)` on `event`: "on_batch_end" after each step, "on_eval" after each evaluation,
        "on_epoch_end" after each epoch over a DataLoader (after its evaluation, when eval_interval="epoch")."""
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
        return amp(self.device, training=training, model=self.model, enabled=self.config.amp)

    def _loader(self, dataset: Dataset, seed: int, start: int) -> DataLoader:
        return random_batches(dataset, self.config.batch_size, seed, start, num_workers=self.config.num_workers,
                              pin_memory=self.device.type == "cuda", collate_fn=self.collate_fn)

    def _batches(self) -> Iterator[Any]:
        """The batches from the current position on: endless random ones (a dataset), or the rest of the
        current epoch (a DataLoader, its first epoch_step batches skipped: they were trained on before a resume)."""
        if not self.epochs:
            return iter(self._loader(self.train_dataset, self.config.seed, start=self.iter_num))
        loader = self.train_dataset
        for sampler in (loader.batch_sampler, loader.sampler):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
        with torch.random.fork_rng(devices=[]):  # creating the iterator may draw a seed: keep the run's RNG as is
            batches = iter(loader)
        return islice(batches, self.epoch_step, None)

    def _iters_done(self) -> bool:
        return self.config.max_iters is not None and self.iter_num >= self.config.max_iters

    def _epochs_done(self) -> bool:
        return self.config.max_epochs is not None and self.epoch >= self.config.max_epochs

    def _total(self) -> int | None:
        """Steps the progress bar counts to (None: unknown)."""
        total, per_epoch = self.config.max_iters, self._batches_per_epoch()
        if self.config.max_epochs is not None and per_epoch is not None:
            by_epochs = self.config.max_epochs * per_epoch
            total = by_epochs if total is None else min(total, by_epochs)
        return total

    def _batches_per_epoch(self) -> int | None:
        """len() of a DataLoader as train data; None for a dataset's endless batches or a loader without len()."""
        if not self.epochs:
            return None
        try:
            return len(self.train_dataset)
        except TypeError:  # a DataLoader over an IterableDataset without __len__
            return None

    def run(self) -> None:
        """Train until iter_num reaches config.max_iters (or epoch reaches config.max_epochs); calling it again
        (or after resume) continues."""
        model, config = self.model, self.config
        if config.progress:  # said when training starts: building a trainer only to resume or evaluate prints nothing
            print(f"running on device {self.device}")
        optimizer = self._get_optimizer()
        model.train()
        precision = self._precision(training=True)
        scaler = precision.grad_scaler()
        self._epoch_nll = self._epoch_nll.to(self.device)
        bar = tqdm(total=self._total(), initial=self.iter_num, disable=not config.progress, desc="training")
        self.iter_time = time.time()
        try:
            while not self._epochs_done():
                if self.epochs and config.max_epochs is not None:
                    bar.set_description(f"epoch {self.epoch + 1}/{config.max_epochs}", refresh=False)
                batches = self._batches()
                for batch in batches:
                    if self._iters_done():
                        return
                    self._step(batch, optimizer, scaler, precision, bar)
                self._end_epoch()  # only a DataLoader runs out of batches
        finally:
            bar.close()

    def _step(self, batch: Any, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              precision: Precision, bar: Any) -> None:
        """One optimizer step on batch = (x, y), then the bookkeeping, evaluation and callbacks."""
        model, config = self.model, self.config
        x, y = batch
        n = int((y != IGNORE_INDEX).sum()) if self.epochs else 0  # counted on the loader's (CPU) copy: no sync
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with precision.autocast():
            _, loss = model(x, y)
        model.zero_grad(set_to_none=True)
        backward_step(loss, optimizer, scaler, model.parameters(), config.grad_norm_clip)

        self.iter_num += 1
        self.loss = loss.detach()
        self._pending.append(self.loss)
        if self.epochs:
            self.epoch_step += 1
            self._epoch_nll += self.loss.double() * n
            self._epoch_count += n
        now = time.time()
        self.iter_dt, self.iter_time = now - self.iter_time, now
        bar.update(1)
        if self.device.type != "cuda" or len(self._pending) >= SYNC_EVERY:
            bar.set_postfix(loss=f"{self.losses[-1]:.4f}", refresh=False)
        if (isinstance(config.eval_interval, int) and config.eval_interval and self.eval_dataset is not None
                and self.iter_num % config.eval_interval == 0):
            self.evaluate()
        self.trigger_callbacks("on_batch_end")

    def _end_epoch(self) -> None:
        """Close the epoch over the DataLoader: its mean training loss, the evaluation, "on_epoch_end"."""
        if self._epoch_count:
            self.epoch_losses.append(self._epoch_nll.item() / self._epoch_count)
        self.epoch, self.epoch_step = self.epoch + 1, 0
        self._epoch_nll, self._epoch_count = torch.zeros((), dtype=torch.float64, device=self.device), 0
        if self.config.eval_interval == "epoch" and self.eval_dataset is not None:
            self.evaluate()
        self.trigger_callbacks("on_epoch_end")

    def evaluate(self) -> float:
        """Token-weighted mean loss over config.eval_iters fixed batches of eval_dataset (dropout off), or a
        whole eval DataLoader when eval_iters is None; fires "on_eval"."""
        if self.eval_dataset is None:
            raise ValueError("no eval_dataset: pass one to Trainer(config, model, train_dataset, eval_dataset)")
        data = self.eval_dataset
        batches = data if isinstance(data, DataLoader) else self._loader(data, seed=self.config.seed + 1, start=0)
        with torch.random.fork_rng(devices=[]):  # a DataLoader without its own generator draws from the global RNG
            self.eval_loss = evaluate(self.model, batches, max_batches=self.config.eval_iters,
                                      amp=self.config.amp)["loss"]
        self.eval_losses.append((self.iter_num, self.eval_loss))
        self.trigger_callbacks("on_eval")
        return self.eval_loss

    # ------------------------------------------------------------------------------------------ checkpoints

    def _data_position(self) -> dict[str, Any]:
        """What fixes the order of the training batches; a resume needs the same."""
        if not self.epochs:  # batch k depends only on (seed, k), so the position in the data stream is iter_num
            return {"seed": self.config.seed, "batch_size": self.config.batch_size}
        return {"batches_per_epoch": self._batches_per_epoch()}  # the loader's order: its own seed and the epoch

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint everything needed to continue exactly (`save_checkpoint`'s format)."""
        save_checkpoint(path, self.model, self._get_optimizer(), iter_num=self.iter_num, losses=list(self.losses),
                        eval_losses=list(self.eval_losses), sampler=self._data_position(),
                        epoch=self.epoch, epoch_step=self.epoch_step, epoch_losses=list(self.epoch_losses),
                        epoch_nll=float(self._epoch_nll), epoch_count=self._epoch_count)

    def resume(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by `save`; the next `run()` continues from its iter_num (and epoch)."""
        have = self._data_position()

        def same_data(progress: dict[str, Any]) -> None:  # checked before load_checkpoint restores anything
            sampler = progress.get("sampler")
            if sampler is None or sampler == have:
                return
            if "seed" in sampler and "seed" in have:
                raise ValueError(f"checkpoint was trained with seed={sampler['seed']}, batch_size="
                                 f"{sampler['batch_size']}; set the same in the config (have seed={self.config.seed}"
                                 f", batch_size={self.config.batch_size}) to continue the same run")
            raise ValueError(f"checkpoint was trained on other batches ({sampler}, here {have}): pass the same "
                             f"kind of training data (a dataset, or a DataLoader with as many batches)")

        progress = load_checkpoint(path, self.model, self._get_optimizer(), expect="iter_num", check=same_data)
        self.iter_num = progress["iter_num"]
        self.losses = list(progress["losses"])
        self.eval_losses = [tuple(e) for e in progress["eval_losses"]]
        self.eval_loss = self.eval_losses[-1][1] if self.eval_losses else None
        self.loss = torch.tensor(self.losses[-1]) if self.losses else None
        self.epoch, self.epoch_step = progress.get("epoch", 0), progress.get("epoch_step", 0)
        self.epoch_losses = list(progress.get("epoch_losses", []))
        self._epoch_nll = torch.tensor(progress.get("epoch_nll", 0.0), dtype=torch.float64)
        self._epoch_count = progress.get("epoch_count", 0)
