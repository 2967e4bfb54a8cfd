import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from labsupport.generate import generate
from labsupport.gpt import GPT
from labsupport.lmtrain import SampleEveryEpoch, evaluate_lm, lm_datasets, moving_average, perplexity, plot_losses
from labsupport.textdata import IGNORE_INDEX, CharVocab, WordVocab, lm_collate_fn
from labsupport.trainer import Trainer

matplotlib.use("Agg")

TRAIN = "the cat sat on the mat . the dog sat on the log . " * 20
VAL = "the dog sat on the mat . the cat sat on the log . " * 3


def tiny_gpt(vocab_size, block_size=8, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    mc = GPT.get_default_config()
    mc.merge_from_dict(dict(model_type=None, n_layer=1, n_head=2, n_embd=16, vocab_size=vocab_size,
                            block_size=block_size, embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout))
    return GPT(mc)


def tiny_trainer(max_iters=6, eval_interval=None, **model_kw):
    vocab = WordVocab.build(TRAIN)
    train_ds, val_ds = lm_datasets(vocab, TRAIN, VAL, seq_len=8)
    tc = Trainer.get_default_config()
    tc.merge_from_dict(dict(device="cpu", batch_size=4, max_iters=max_iters, progress=False, learning_rate=3e-3,
                            eval_interval=eval_interval, eval_iters=2))
    return vocab, Trainer(tc, tiny_gpt(len(vocab), **model_kw), train_ds, val_ds)


# ---------------------------------------------------------------------------------------------- datasets


def test_lm_datasets_encode_both_splits_with_targets_shifted_by_one():
    vocab = CharVocab.build(TRAIN)
    train_ds, val_ds = lm_datasets(vocab, TRAIN, VAL, seq_len=5)
    assert train_ds.ids.tolist() == vocab.encode(TRAIN) and val_ds.ids.tolist() == vocab.encode(VAL)
    x, y = val_ds[1]
    assert x.shape == y.shape == (5,)
    assert vocab.decode(x) == VAL[5:10] and vocab.decode(y) == VAL[6:11]


# ---------------------------------------------------------------------------------------------- evaluate_lm


def test_evaluate_lm_is_the_token_mean_cross_entropy_over_the_whole_set():
    vocab = WordVocab.build(TRAIN)
    _, val_ds = lm_datasets(vocab, TRAIN, VAL, seq_len=4)
    model = tiny_gpt(len(vocab))
    with torch.no_grad():
        xs = torch.stack([val_ds[i][0] for i in range(len(val_ds))])
        ys = torch.stack([val_ds[i][1] for i in range(len(val_ds))])
        logits, _ = model(xs)
        want = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ys.reshape(-1)).item()
    for batch_size in (1, 3, len(val_ds), 1000):  # a short last batch must not be over-weighted
        assert evaluate_lm(model, val_ds, batch_size=batch_size) == pytest.approx(want, rel=1e-5)


def test_evaluate_lm_max_batches_reads_only_the_first_batches():
    vocab = WordVocab.build(TRAIN)
    _, val_ds = lm_datasets(vocab, TRAIN, VAL, seq_len=4)
    model = tiny_gpt(len(vocab))
    with torch.no_grad():
        x = torch.stack([val_ds[i][0] for i in range(4)])
        y = torch.stack([val_ds[i][1] for i in range(4)])
        want = model(x, y)[1].item()
    assert evaluate_lm(model, val_ds, batch_size=2, max_batches=2) == pytest.approx(want, rel=1e-5)


def test_evaluate_lm_weights_batches_by_real_targets():
    """With padded (x, y) pairs, every non-ignored target counts once, however the batches fall."""
    vocab = WordVocab.build(TRAIN)
    model = tiny_gpt(len(vocab))
    seqs = [vocab.encode(s) for s in ("the cat sat on the mat .", "the dog", "the log . the cat")]
    collate = lm_collate_fn()
    items = list(zip(*collate(seqs)))  # padded (x, y) pairs of one length
    with torch.no_grad():
        x, y = collate(seqs)
        logits, _ = model(x)
        want = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=IGNORE_INDEX).item()
    assert evaluate_lm(model, items, batch_size=2) == pytest.approx(want, rel=1e-5)


def test_evaluate_lm_turns_dropout_off_and_restores_the_mode():
    vocab = WordVocab.build(TRAIN)
    _, val_ds = lm_datasets(vocab, TRAIN, VAL, seq_len=4)
    model = tiny_gpt(len(vocab), dropout=0.5).train()
    a, b = evaluate_lm(model, val_ds), evaluate_lm(model, val_ds)
    assert a == b and model.training


def test_evaluate_lm_rejects_bad_input():
    model = tiny_gpt(10)
    with pytest.raises(ValueError, match="empty"):
        evaluate_lm(model, [])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_lm(model, [(torch.zeros(3, dtype=torch.long),) * 2], batch_size=0)


# ---------------------------------------------------------------------------------------------- sampling callback


def test_sampler_prints_every_n_iterations_with_losses_and_sample():
    vocab, trainer = tiny_trainer(max_iters=6, eval_interval=3)
    lines = []
    sampler = SampleEveryEpoch(vocab, vocab.encode("the cat"), every=3, max_new_tokens=5, printer=lines.append)
    sampler.attach(trainer)
    sampler(trainer)  # iteration 0, before training: no losses yet
    trainer.run()
    assert [it for it, _ in sampler.samples] == [0, 3, 6]
    assert len(lines) == 3 and lines[0].startswith("iter     0") and "train loss   -  " in lines[0]
    mean_last3 = sum(trainer.losses[3:6]) / 3
    assert f"train loss {mean_last3:.3f}" in lines[2] and f"val loss {trainer.eval_losses[-1][1]:.3f}" in lines[2]
    for (_, text), line in zip(sampler.samples, lines):
        assert text.startswith("the cat") and len(text.split()) == 7 and repr(text) in line


def test_sampler_sample_is_seeded_generation():
    vocab, trainer = tiny_trainer()
    prompt = vocab.encode("the dog")
    sampler = SampleEveryEpoch(vocab, prompt, every=1, max_new_tokens=6, temperature=0.9, top_k=3, seed=5)
    want = generate(trainer.model, prompt, 6, temperature=0.9, top_k=3, seed=5)
    assert sampler.sample(trainer.model) == vocab.decode(want) == sampler.sample(trainer.model)


def test_sampler_never_draws_suppressed_tokens():
    vocab, trainer = tiny_trainer()
    banned = [vocab.unk_id, vocab.pad_id, vocab.stoi["the"]]  # untrained: ~uniform over ~15 tokens
    sampler = SampleEveryEpoch(vocab, [vocab.stoi["cat"]], every=1, max_new_tokens=100, suppress_ids=banned)
    text = sampler.sample(trainer.model)
    assert text == vocab.decode(generate(trainer.model, [vocab.stoi["cat"]], 100, seed=0, suppress_ids=banned))
    assert not {"the", "<unk>", "<pad>"} & set(text.split())
    unrestricted = SampleEveryEpoch(vocab, [vocab.stoi["cat"]], every=1, max_new_tokens=100).sample(trainer.model)
    assert {"the", "<unk>", "<pad>"} <= set(unrestricted.split())


def test_sampler_does_not_change_the_training_run():
    _, plain = tiny_trainer(max_iters=6, dropout=0.1)  # dropout: losses depend on the global torch RNG
    plain.run()
    vocab, watched = tiny_trainer(max_iters=6, dropout=0.1)
    SampleEveryEpoch(vocab, vocab.encode("the"), every=2, max_new_tokens=4, printer=lambda s: None).attach(watched)
    watched.run()
    assert watched.losses == plain.losses
    assert watched.model.training


def test_sampler_accepts_a_decode_function_and_rejects_bad_settings():
    vocab, trainer = tiny_trainer()
    sampler = SampleEveryEpoch(lambda ids: "|".join(map(str, ids)), [4, 5], every=1, max_new_tokens=2)
    assert sampler.sample(trainer.model).startswith("4|5|")
    for every in (0, 2.5, True):
        with pytest.raises(ValueError, match="every"):
            SampleEveryEpoch(vocab, [4], every=every)
    with pytest.raises(ValueError, match="empty"):
        SampleEveryEpoch(vocab, [], every=1)


# ---------------------------------------------------------------------------------------------- plots and numbers


def test_moving_average():
    assert moving_average([1, 2, 3, 4, 5], 2) == [1, 1.5, 2.5, 3.5, 4.5]
    assert moving_average([4.0], 10) == [4.0]
    assert moving_average([1, 3, 5], 1) == [1, 3, 5]
    with pytest.raises(ValueError):
        moving_average([1], 0)


def test_plot_losses_of_a_trainer_draws_train_smoothed_validation_and_ln_v():
    _, trainer = tiny_trainer(max_iters=6, eval_interval=2)
    trainer.run()
    ax = plot_losses(trainer, floor=math.log(7), floor_label="ln V", smooth=3).axes[0]
    lines = ax.get_lines()
    ydata = [list(line.get_ydata()) for line in lines]
    assert trainer.losses in ydata and moving_average(trainer.losses, 3) in ydata
    val = [line for line in lines if list(line.get_xdata()) == [2, 4, 6]]
    assert val and list(val[0].get_ydata()) == [v for _, v in trainer.eval_losses]
    assert any(list(line.get_ydata()) == [math.log(7)] * 2 for line in lines)
    assert any("ln V" in t.get_text() for t in ax.get_legend().get_texts())


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50)) == pytest.approx(50)
