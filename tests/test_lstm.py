import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.text import Perplexity

from labsupport import lstm
from labsupport.checkpoint import load_checkpoint, save_checkpoint
from labsupport.core import IGNORE_INDEX
from labsupport.evaluation import evaluate
from labsupport.generate import generate
from labsupport.textdata import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, WordVocab, encode_documents, pad_fraction
from labsupport.trainer import Trainer

REVIEWS = [
    "A great movie.<br /><br />The acting was great and the plot was great .",
    "the movie was bad . the acting was bad<br/>and the plot was worse",
    "I loved the movie , the movie was great",
    "the plot was thin<BR>but the acting was fine and the movie was fun",
] * 3


def tiny_model(vocab_size=20, seed=0, **overrides):
    torch.manual_seed(seed)
    config = lstm.LSTMLanguageModel.get_default_config()
    config.merge_from_dict({"vocab_size": vocab_size, "embed_dim": 8, "hidden_size": 12, **overrides})
    return lstm.LSTMLanguageModel(config)


def sequences(n=24, vocab_size=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 15, (n,), generator=g)
    return [[BOS_ID, *torch.randint(4, vocab_size, (int(k) - 2,), generator=g).tolist(), EOS_ID] for k in lengths]


# ---------------------------------------------------------------------------------------------- data


def test_clean_review_removes_every_br_form():
    assert lstm.clean_review("a.<br /><br />b<br/>c<BR>d") == "a.  b c d"
    tokens = " ".join(lstm.clean_review(r) for r in REVIEWS).lower().split()
    assert not [t for t in tokens if "<br" in t or "/>" in t]
    raw_tokens = " ".join(REVIEWS).lower().split()
    assert "/>the" in raw_tokens  # what the tags do when left in
    with pytest.raises(TypeError, match="one review"):
        lstm.clean_review(["a list"])


def test_vocabulary_keeps_words_counted_more_than_five_times():
    texts = [lstm.clean_review(r) for r in REVIEWS]
    counts = {}
    for w in " ".join(texts).lower().split():
        counts[w] = counts.get(w, 0) + 1
    vocab = WordVocab.build(texts, min_freq=6, lowercase=True)
    assert vocab.itos[:4] == list(SPECIALS) == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert set(vocab.itos[4:]) == {w for w, n in counts.items() if n > 5}
    assert "thin" not in vocab and counts["thin"] == 3 and counts["movie"] > 5 and "movie" in vocab
    assert "The" not in vocab and "the" in vocab  # lowercased


def test_encode_documents_layout_truncates_wraps_and_pads():
    vocab = WordVocab.build(["a b c d e f g"], lowercase=True)
    ids = encode_documents(["A b c d e f g", "b"], vocab, max_len=6, pad_to=8)
    a, b, c, d = (vocab.stoi[w] for w in "abcd")
    assert ids[0] == [BOS_ID, a, b, c, d, EOS_ID, PAD_ID, PAD_ID]  # 4 content tokens = max_len - 2, then pads
    assert ids[1] == [BOS_ID, b, EOS_ID] + [PAD_ID] * 5
    assert encode_documents(["a zebra"], vocab, max_len=258)[0] == [BOS_ID, a, UNK_ID, EOS_ID]


def test_make_loader_shifts_pads_targets_with_ignore_index_and_covers_every_sequence():
    seqs = sequences(30)
    loader = lstm.make_loader(seqs, batch_size=4, seed=1)
    seen = []
    for x, y in loader:
        assert x.shape == y.shape and x.size(1) == max(int((row != IGNORE_INDEX).sum()) for row in y)
        assert not (y == PAD_ID).any()  # padded targets hold IGNORE_INDEX, the one ignored id
        for row_x, row_y in zip(x, y):
            n = int((row_y != IGNORE_INDEX).sum())
            assert torch.equal(row_x[1:n], row_y[: n - 1]) and row_x[0] == BOS_ID and row_y[n - 1] == EOS_ID
            assert (row_x[n:] == PAD_ID).all() and (row_y[n:] == IGNORE_INDEX).all()
            seen.append(row_x[:n].tolist() + [EOS_ID])
    assert sorted(seen) == sorted(seqs)


def test_bucketing_pads_less_and_order_depends_only_on_epoch():
    seqs = sequences(400, seed=3)
    lengths = [len(s) for s in seqs]
    plain = lstm.make_loader(seqs, 16, bucket=False, seed=0)
    bucketed = lstm.make_loader(seqs, 16, bucket=True, seed=0)
    assert pad_fraction(list(bucketed.batch_sampler), lengths) < pad_fraction(list(plain.batch_sampler), lengths) / 3
    bucketed.batch_sampler.set_epoch(5)
    first = [x.tolist() for x, _ in bucketed]
    torch.manual_seed(123)  # the global RNG must not matter
    again = lstm.make_loader(seqs, 16, bucket=True, seed=0)
    again.batch_sampler.set_epoch(5)
    assert [x.tolist() for x, _ in again] == first
    fixed = lstm.make_loader(seqs, 16, shuffle=False, bucket=False)
    assert [i for b in fixed.batch_sampler for i in b] == list(range(400))


def test_make_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        lstm.make_loader([], 4)
    with pytest.raises(ValueError, match=">= 2 tokens"):
        lstm.make_loader([[BOS_ID, 5, EOS_ID], [BOS_ID]], 4)


# ---------------------------------------------------------------------------------------------- model


def test_model_shapes_padding_embedding_and_defaults():
    config = lstm.LSTMLanguageModel.get_default_config()
    assert (config.embed_dim, config.hidden_size, config.num_layers, config.pad_id) == (300, 256, 1, PAD_ID)
    config.vocab_size = 50
    model = lstm.LSTMLanguageModel(config)
    assert model.embedding.padding_idx == PAD_ID and model.lstm.batch_first and model.lstm.hidden_size == 256
    assert model.embedding.weight[PAD_ID].abs().sum() == 0
    idx = torch.randint(0, 50, (3, 7))
    logits, loss = model(idx)
    assert logits.shape == (3, 7, 50) and loss is None
    _, loss = model(idx, idx)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    n = model.num_parameters()
    assert n == 50 * 300 + 4 * 256 * (300 + 256 + 2) + 256 * 50 + 50


def test_model_is_causal_and_right_padding_does_not_change_real_logits():
    model = tiny_model().eval()
    a = torch.tensor([[2, 5, 6, 7, 8, 9]])
    padded = torch.tensor([[2, 5, 6, 1, 1, 1]])
    la, lp = model(a)[0], model(padded)[0]
    torch.testing.assert_close(la[:, :3], lp[:, :3])
    assert not torch.allclose(la[:, 3:], lp[:, 3:])


@pytest.mark.parametrize("bad, match", [
    ({"vocab_size": None}, "vocab_size"), ({"hidden_size": 0}, "hidden_size"), ({"pad_id": 99}, "pad_id"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config_errors(bad, match):
    config = lstm.LSTMLanguageModel.get_default_config()
    config.vocab_size = 20
    config.merge_from_dict(bad)
    with pytest.raises(ValueError, match=match):
        lstm.LSTMLanguageModel(config)


def test_bad_forward_input_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.tensor([2, 5, 6]))
    with pytest.raises(ValueError, match="LongTensor"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="token ids must be in 0..19"):
        model(torch.tensor([[2, 25]]))
    with pytest.raises(ValueError, match="targets must have the shape"):
        model(torch.tensor([[2, 5]]), torch.tensor([[5]]))


def test_forward_under_bf16_autocast_keeps_lstm_in_float32():
    model = tiny_model()
    idx = torch.randint(0, 20, (2, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(idx, idx)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32  # the logits feed the loss: float32
    ref = model(idx)[0]
    torch.testing.assert_close(logits, ref)  # LSTM and head in float32: autocast changes nothing here


# ---------------------------------------------------------------------------------------------- loss, perplexity


def _batch_with_pads(seed=0, B=3, T=6, V=9):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 2
    targets = torch.randint(2, V, (B, T), generator=g)
    targets[0, 3:] = PAD_ID
    targets[2, 1:] = PAD_ID
    return logits, targets


def test_masked_loss_matches_hand_computation_and_ignores_pads():
    logits, targets = _batch_with_pads()
    logp = logits.log_softmax(-1)
    nll = [-logp[b, t, targets[b, t]] for b in range(3) for t in range(6) if targets[b, t] != PAD_ID]
    want = sum(nll) / len(nll)
    torch.testing.assert_close(lstm.lm_loss(logits, targets), want)
    with_pads = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert abs(with_pads - want) > 1e-3
    # what a pad position predicts cannot change the loss
    changed = logits.clone()
    changed[targets == PAD_ID] = 100.0
    torch.testing.assert_close(lstm.lm_loss(changed, targets), want)


def test_perplexity_matches_torchmetrics_over_batches():
    metric = Perplexity(ignore_index=PAD_ID)
    losses, counts = [], []
    for seed in range(4):
        logits, targets = _batch_with_pads(seed, T=4 + seed)  # different token counts per batch
        metric.update(logits, targets)
        losses.append(lstm.lm_loss(logits, targets).item())
        counts.append(int((targets != PAD_ID).sum()))
    want = metric.compute().item()
    assert lstm.perplexity(losses, counts) == pytest.approx(want, rel=1e-5)
    assert math.exp(sum(losses) / len(losses)) != pytest.approx(want, rel=1e-3)  # mean of batch means is wrong


def test_evaluate_matches_torchmetrics_on_a_loader():
    model = tiny_model().eval()
    seqs = sequences(20)
    loader = lstm.make_loader(seqs, 6, shuffle=False, bucket=False)
    metric = Perplexity(ignore_index=IGNORE_INDEX)
    with torch.no_grad():
        for x, y in loader:
            metric.update(model(x)[0], y)
    result = evaluate(model, loader)
    assert result["perplexity"] == pytest.approx(metric.compute().item(), rel=1e-5)
    assert result["count"] == sum(len(s) - 1 for s in seqs)


def test_perplexity_errors():
    with pytest.raises(ValueError, match="one token count per loss"):
        lstm.perplexity([1.0, 2.0], [3])
    with pytest.raises(ValueError, match="sum to 0"):
        lstm.perplexity([1.0], [0])


def test_unigram_perplexity_by_hand():
    train = [[BOS_ID, 4, 4, 5, EOS_ID]]
    test = [[BOS_ID, 4, EOS_ID, PAD_ID]]
    V = 6  # counts + 1: [1, 1, 1, 2, 3, 2] / 10 -> p(4) = 0.3, p(eos) = 0.2
    assert lstm.unigram_perplexity(train, test, V) == pytest.approx(math.exp(-(math.log(0.3) + math.log(0.2)) / 2))


# ---------------------------------------------------------------------------------------------- generation


def test_generation_never_emits_unk_pad_or_bos():
    model = tiny_model(vocab_size=12).eval()
    with torch.no_grad():  # make the forbidden tokens by far the most likely ones
        model.head.bias[list(lstm.SUPPRESS_IDS)] = 8.0
    prompt = torch.full((4, 1), BOS_ID)
    for seed in range(25):
        out = generate(model, prompt, 12, temperature=1.5, seed=seed, eos_id=EOS_ID, suppress_ids=lstm.SUPPRESS_IDS)
        new = out[:, 1:]
        assert not torch.isin(new, torch.tensor(lstm.SUPPRESS_IDS)).any()
    raw = generate(model, prompt, 12, temperature=1.0, seed=0)
    assert torch.isin(raw[:, 1:], torch.tensor(lstm.SUPPRESS_IDS)).any()  # the mask is what prevents them


def test_complete_stops_at_eos_and_returns_words():
    vocab = WordVocab.build(["the movie was great fun"])
    model = tiny_model(vocab_size=len(vocab)).eval()
    with torch.no_grad():
        model.head.bias[EOS_ID] = 5.0  # eos is likely: samples end early
    texts = lstm.complete(model, vocab, "the movie was", 30, temperature=1.0, seed=0, n=5)
    assert len(texts) == 5
    for text in texts:
        assert text.startswith("the movie was") and "<" not in text
        assert set(text.split()) <= set(vocab.itos[4:])
    greedy = lstm.complete(model, vocab, "the movie was", 30, temperature=0, n=1)
    assert greedy == ["the movie was"]  # argmax is eos right away


# ---------------------------------------------------------------------------------------------- training, resume


def trainer_for(tmp_path=None, seed=0, **overrides):
    """Lab 06's training: Trainer over a length-bucketed loader, Adam (AdamW without decay), test set each epoch;
    dropout on two LSTM layers, so the losses depend on the torch RNG a resume must restore."""
    model = tiny_model(seed=seed, dropout=0.2, num_layers=2)
    config = Trainer.get_default_config()
    config.merge_from_dict(dict(device="cpu", max_epochs=2, eval_interval="epoch", eval_iters=None, progress=False,
                                learning_rate=1e-2, betas=(0.9, 0.999), weight_decay=0.0, **overrides))
    test_loader = lstm.make_loader(sequences(10, seed=2), 8, shuffle=False)
    return Trainer(config, model, lstm.make_loader(sequences(40, seed=1), 8, seed=0), test_loader)


def trained_state(tr):
    return tr.losses, tr.epoch_losses, tr.eval_losses, [p.clone() for p in tr.model.state_dict().values()]


@pytest.fixture(scope="module")
def straight():
    tr = trainer_for()
    tr.run()
    return trained_state(tr)


def test_trainer_trains_the_lstm_epoch_by_epoch(straight):
    losses, epoch_losses, eval_losses, _ = straight
    assert len(losses) == 2 * 5 and len(epoch_losses) == 2  # 40 sequences in batches of 8: 5 steps per epoch
    assert epoch_losses[1] < epoch_losses[0] and eval_losses[1][1] < eval_losses[0][1]
    assert [i for i, _ in eval_losses] == [5, 10]  # after each epoch, on the whole test loader


@pytest.mark.parametrize("stop", [5, 3], ids=["at an epoch end", "in the middle of an epoch"])
def test_resume_from_checkpoint_equals_uninterrupted_training(straight, tmp_path, stop):
    first = trainer_for(max_iters=stop)
    first.run()
    first.save(tmp_path / "ckpt.pt")
    torch.manual_seed(999)  # a fresh process: different global RNG, new model and optimizer
    resumed = trainer_for(seed=5)
    resumed.resume(tmp_path / "ckpt.pt")
    resumed.run()
    losses, epoch_losses, eval_losses, weights = trained_state(resumed)
    assert losses == straight[0] and epoch_losses == straight[1] and eval_losses == straight[2]
    for a, b in zip(weights, straight[3]):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # written atomically


def test_resume_without_rng_state_would_differ(straight, tmp_path):
    """Guards the test above: the dropout masks really depend on the restored RNG state."""
    first = trainer_for(max_iters=3)
    first.run()
    first.save(tmp_path / "ckpt.pt")
    resumed = trainer_for()
    resumed.resume(tmp_path / "ckpt.pt")
    torch.manual_seed(123)
    resumed.run()
    assert resumed.losses[:3] == straight[0][:3] and resumed.losses[3:] != straight[0][3:]


def test_training_keeps_the_pad_embedding_zero(straight):
    *_, weights = straight
    assert weights[0].shape == (20, 8) and weights[0][PAD_ID].abs().max() == 0  # embedding.weight comes first


def test_epoch_loss_is_token_weighted():
    model = tiny_model()
    seqs = sequences(12)
    loader = lstm.make_loader(seqs, 5, seed=0)
    config = Trainer.get_default_config()
    config.merge_from_dict(dict(device="cpu", max_epochs=1, progress=False, learning_rate=0.0, weight_decay=0.0))
    tr = Trainer(config, model, loader)
    tr.run()  # lr 0, no dropout: the model never changes
    assert tr.iter_num == len(loader) == 3 and tr.epoch == 1
    assert tr.epoch_losses[0] == pytest.approx(evaluate(model, loader)["loss"], rel=1e-6)
    assert tr.epoch_losses[0] != pytest.approx(sum(tr.losses) / len(tr.losses), rel=1e-4)  # not the batch mean


def test_model_save_load_round_trip_and_wrong_file(tmp_path):
    model = tiny_model()
    model.save(tmp_path / "m.pt")
    loaded = lstm.LSTMLanguageModel.load(tmp_path / "m.pt")
    assert loaded.config == model.config
    idx = torch.randint(0, 20, (2, 6))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    save_checkpoint(tmp_path / "c.pt", model, torch.optim.Adam(model.parameters()), epoch=1)
    with pytest.raises(ValueError, match="Trainer.resume"):
        lstm.LSTMLanguageModel.load(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="not a labsupport training checkpoint"):
        load_checkpoint(tmp_path / "m.pt", model)
