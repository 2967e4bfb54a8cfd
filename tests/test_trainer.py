"""Trainer: exact resume across processes, atomic checkpoints, callbacks.

Run as a script (`python test_trainer.py OUT_JSON THREADS CKPT...`) it resumes each CKPT in a fresh
process, trains to N_ITERS and writes the loss histories to OUT_JSON.
"""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from labsupport.checkpoint import load_checkpoint, save_checkpoint
from labsupport.gpt import GPT
from labsupport.trainer import RandomBatchSampler, Trainer

N_ITERS = 8


class ReverseDataset(Dataset):
    """x = random tokens, y = the same tokens reversed (a task the model can make progress on)."""

    def __init__(self, n=64, length=6, vocab=7, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(vocab, (n, length), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.x[i].flip(0)


def build(max_iters=N_ITERS, **overrides):
    torch.manual_seed(0)
    mc = GPT.get_default_config()
    mc.merge_from_dict(dict(model_type=None, n_layer=2, n_head=2, n_embd=16, vocab_size=7, block_size=6))
    model = GPT(mc)  # dropout 0.1 on: the losses depend on the torch RNG, so resume must restore it
    tc = Trainer.get_default_config()
    tc.merge_from_dict(dict(device="cpu", batch_size=8, max_iters=max_iters, progress=False, learning_rate=3e-3))
    tc.merge_from_dict(overrides)
    return Trainer(tc, model, ReverseDataset(), eval_dataset=ReverseDataset(n=16, seed=1))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run of N_ITERS, which also saves a checkpoint from a callback half way."""
    path = tmp_path_factory.mktemp("straight") / "mid.pt"
    trainer = build()
    trainer.add_callback("on_batch_end", lambda tr: tr.iter_num == N_ITERS // 2 and tr.save(path))
    trainer.run()
    return trainer.losses, path


def resume_in_new_process(tmp_path, *ckpts):
    out = tmp_path / "losses.json"
    args = [sys.executable, __file__, str(out), str(torch.get_num_threads()), *map(str, ckpts)]
    subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def test_losses_decrease_and_history_is_complete(straight):
    losses, _ = straight
    assert len(losses) == N_ITERS and all(isinstance(v, float) for v in losses)
    assert sum(losses[-2:]) < sum(losses[:2])


def test_run_half_save_resume_in_new_process_gives_identical_losses(straight, tmp_path):
    losses, mid_ckpt = straight
    first = build(max_iters=N_ITERS // 2)
    first.run()
    assert first.losses == losses[: N_ITERS // 2]
    first.save(tmp_path / "half.pt")
    # also resume a checkpoint written from a callback mid-run, as a run that is later killed would
    resumed = resume_in_new_process(tmp_path, tmp_path / "half.pt", mid_ckpt)
    assert resumed == [losses, losses]


def test_resume_without_rng_state_would_differ(straight):
    """Guards the test above: dropout and data order really depend on the restored state."""
    losses, mid_ckpt = straight
    trainer = build()
    trainer.resume(mid_ckpt)
    torch.manual_seed(123)  # clobber the restored torch RNG -> different dropout masks
    trainer.run()
    assert trainer.losses[: N_ITERS // 2] == losses[: N_ITERS // 2]
    assert trainer.losses[N_ITERS // 2:] != losses[N_ITERS // 2:]


def test_batches_depend_only_on_seed_and_position():
    full = iter(RandomBatchSampler(50, 4, seed=3))
    batches = [next(full) for _ in range(6)]
    later = iter(RandomBatchSampler(50, 4, seed=3, start=4))
    assert [next(later), next(later)] == batches[4:]
    assert next(iter(RandomBatchSampler(50, 4, seed=4))) != batches[0]
    assert all(0 <= i < 50 for b in batches for i in b)


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    trainer = build(max_iters=2)
    trainer.run()
    path = tmp_path / "ckpt.pt"
    trainer.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    trainer.config.max_iters = 3
    trainer.run()

    def crashing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(RuntimeError, match="killed"):
        trainer.save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    assert torch.load(path, weights_only=True)["progress"]["iter_num"] == 2  # the old checkpoint, intact


def test_resume_restores_python_numpy_and_torch_rng(tmp_path):
    trainer = build(max_iters=1)
    trainer.run()
    trainer.save(tmp_path / "c.pt")
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    other = build(seed=7)  # a different seed moves every generator elsewhere...
    other.config.seed = 0  # ...but the checkpoint's data order needs the original seed
    other.resume(tmp_path / "c.pt")
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
    assert other.iter_num == 1 and other.losses == trainer.losses


def test_resume_rejects_a_different_batch_size(tmp_path):
    trainer = build(max_iters=1)
    trainer.run()
    trainer.save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="batch_size"):
        build(batch_size=4).resume(tmp_path / "c.pt")


def test_callbacks_fire_and_eval_is_deterministic():
    trainer = build(max_iters=4, eval_interval=2, eval_iters=2)
    seen, evals = [], []
    trainer.add_callback("on_batch_end", lambda tr: seen.append(("a", tr.iter_num)))
    trainer.add_callback("on_batch_end", lambda tr: seen.append(("b", tr.iter_num)))
    trainer.add_callback("on_eval", lambda tr: evals.append((tr.iter_num, tr.eval_loss)))
    trainer.run()
    assert seen == [(name, i) for i in range(1, 5) for name in "ab"]
    assert evals == trainer.eval_losses and [i for i, _ in evals] == [2, 4]
    assert float(trainer.loss) == trainer.losses[-1] and trainer.iter_dt > 0

    trainer.config.max_iters = 5
    trainer.run()  # continues: both callbacks fire once more
    assert seen[-2:] == [("a", 5), ("b", 5)] and len(seen) == 10

    rng = torch.get_rng_state()
    assert trainer.evaluate() == trainer.evaluate()  # same fixed batches, dropout off
    assert torch.equal(torch.get_rng_state(), rng)  # evaluation leaves the training RNG alone
    with pytest.raises(ValueError, match="unknown event"):
        trainer.add_callback("on_step", print)


if __name__ == "__main__":
    out, threads, *ckpts = sys.argv[1:]
    torch.set_num_threads(int(threads))
    histories = []
    for ckpt in ckpts:
        trainer = build()
        trainer.resume(ckpt)
        trainer.run()
        histories.append(trainer.losses)
    with open(out, "w") as f:
        json.dump(histories, f)


def test_one_checkpoint_format_and_a_resume_needs_the_same_data(tmp_path):
    """Trainer.save writes save_checkpoint's format; a checkpoint of another loop's progress, or of training on
    other batches (a DataLoader instead of random batches of a dataset), is refused whole."""
    trainer = build(max_iters=2)
    trainer.run()
    trainer.save(tmp_path / "t.pt")
    progress = load_checkpoint(tmp_path / "t.pt", trainer.model)
    assert progress["iter_num"] == 2 and progress["losses"] == trainer.losses and progress["epoch"] == 0
    save_checkpoint(tmp_path / "other.pt", trainer.model, trainer.optimizer, epoch=1, history={})
    with pytest.raises(ValueError, match="another loop"):
        trainer.resume(tmp_path / "other.pt")
    base = build(max_iters=None)
    base.config.max_epochs = 1
    loader_trainer = Trainer(base.config, base.model, DataLoader(ReverseDataset(n=16), batch_size=8))
    loader_trainer.run()
    assert loader_trainer.iter_num == 2 and loader_trainer.epoch == 1 and len(loader_trainer.epoch_losses) == 1
    loader_trainer.save(tmp_path / "l.pt")
    with pytest.raises(ValueError, match="other batches"):
        build().resume(tmp_path / "l.pt")


def test_epochs_need_a_dataloader_and_a_dataset_may_bring_a_collate_fn():
    with pytest.raises(ValueError, match="max_epochs needs a DataLoader"):
        build(max_epochs=2)
    with pytest.raises(ValueError, match="needs a DataLoader"):
        build(eval_interval="epoch")

    class Ragged(ReverseDataset):
        def __getitem__(self, i):
            x = self.x[i][: 3 + i % 4]  # lengths 3..6: default collation cannot stack them
            return x, x.flip(0)

    def pad(batch):
        T = max(len(x) for x, _ in batch)
        X = torch.zeros(len(batch), T, dtype=torch.long)
        Y = torch.full((len(batch), T), -100)
        for b, (x, y) in enumerate(batch):
            X[b, : len(x)], Y[b, : len(y)] = x, y
        return X, Y

    base = build(max_iters=3)
    trainer = Trainer(base.config, base.model, Ragged(), collate_fn=pad)
    trainer.run()
    assert trainer.iter_num == 3 and all(np.isfinite(trainer.losses))


def test_a_dataloader_without_len_trains_epoch_by_epoch():
    """An IterableDataset's loader has no len(): the Trainer still counts its epochs (and the progress bar has
    no total)."""
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            data = ReverseDataset(n=16)
            return (data[i] for i in range(len(data)))

    base = build(max_iters=None)
    base.config.max_epochs = 2
    trainer = Trainer(base.config, base.model, DataLoader(Stream(), batch_size=8))
    trainer.run()
    assert trainer.iter_num == 4 and trainer.epoch == 2 and len(trainer.epoch_losses) == 2
