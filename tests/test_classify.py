import numpy as np
import pytest
import torch
from torchmetrics.functional import accuracy as tm_accuracy
from transformers import DataCollatorWithPadding, EvalPrediction

from labsupport import fixtures
from labsupport.classify import (
    ClassificationDataset,
    GPTClassifier,
    accuracy,
    compute_metrics,
    count_parameters,
    finetune,
    last_token_index,
    pad_collate,
    precision_kwargs,
    tokenize_batch,
)
from labsupport.evaluation import evaluate
from labsupport.gpt import GPT
from labsupport.textdata import PAD_ID, UNK_ID, WordVocab
from labsupport.trainer import Trainer, make_adamw

VOCAB, BLOCK = 50, 16



def tiny_gpt(seed=0, n_layer=2, vocab=VOCAB, block=BLOCK):
    torch.manual_seed(seed)
    c = GPT.get_default_config()
    c.model_type, c.n_layer, c.n_head, c.n_embd = None, n_layer, 2, 16
    c.vocab_size, c.block_size = vocab, block
    return GPT(c)


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    from labsupport.bpe import hf_gpt2_tokenizer

    tok = hf_gpt2_tokenizer()
    tok.pad_token = tok.eos_token
    return tok


# ---------------------------------------------------------------------------------------------- pooling


def test_padding_a_sequence_does_not_change_its_logits():
    clf = GPTClassifier(tiny_gpt(), 3).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(4, VOCAB, (n,), generator=g) for n in (1, 5, BLOCK)]
    with torch.no_grad():
        alone = [clf(s[None])[0] for s in seqs]  # (1, 3) each, no padding at all
        batch = torch.full((len(seqs), BLOCK), PAD_ID)
        for b, s in enumerate(seqs):
            batch[b, : len(s)] = s
        padded, _ = clf(batch)
        by_lengths, _ = clf(batch, lengths=torch.tensor([len(s) for s in seqs]))
    torch.testing.assert_close(padded, torch.cat(alone), atol=1e-5, rtol=0)
    torch.testing.assert_close(by_lengths, padded)


def test_reading_the_last_position_instead_would_depend_on_padding():
    """The bug this lab fixes: with pads the last POSITION is a pad, whose state differs from the last token's."""
    clf = GPTClassifier(tiny_gpt(), 2).eval()
    s = torch.randint(4, VOCAB, (1, 5), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([s, torch.full((1, 4), PAD_ID)], dim=1)
    with torch.no_grad():
        h_last_position = clf.gpt.forward_hidden(padded)[:, -1]
        h_last_token = clf.gpt.forward_hidden(s)[:, -1]
    assert not torch.allclose(h_last_position, h_last_token, atol=1e-3)


def test_last_token_index_right_left_and_no_padding():
    P = 7
    right = torch.tensor([[5, 6, 8, P, P], [5, P, P, P, P], [1, 2, 3, 4, 5]])
    left = torch.tensor([[P, P, 5, 6, 8], [P, P, P, P, 5], [1, 2, 3, 4, 5]])
    assert last_token_index(right, P).tolist() == [2, 0, 4]
    assert last_token_index(left, P).tolist() == [4, 4, 4]
    # an independent loop over random right- and left-padded batches
    g = torch.Generator().manual_seed(0)
    for side in ("right", "left"):
        lengths = torch.randint(1, 10, (20,), generator=g)
        batch = torch.full((20, 10), P)
        for b, n in enumerate(lengths.tolist()):
            tokens = torch.randint(0, P, (n,), generator=g)  # real tokens may be 0: only != pad matters
            if side == "right":
                batch[b, :n] = tokens
            else:
                batch[b, 10 - n:] = tokens
        want = [max(t for t in range(10) if batch[b, t] != P) for b in range(20)]
        assert last_token_index(batch, P).tolist() == want


def test_last_token_index_rejects_all_padding_and_bad_shapes():
    with pytest.raises(ValueError, match="only of padding"):
        last_token_index(torch.tensor([[3, 4], [1, 1]]), pad_id=1)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        last_token_index(torch.tensor([3, 4, 1]), pad_id=1)


def test_forward_shapes_loss_and_errors():
    clf = GPTClassifier(tiny_gpt(), 4)
    x = torch.randint(4, VOCAB, (3, 7))
    y = torch.tensor([0, 3, 1])
    logits, loss = clf(x, y)
    assert logits.shape == (3, 4) and loss is not None
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, y))
    assert clf(x)[1] is None
    with pytest.raises(ValueError, match=r"targets must be \(B,\)"):
        clf(x, y[:, None])
    with pytest.raises(ValueError, match=">= 2"):
        GPTClassifier(tiny_gpt(), 1)


# ---------------------------------------------------------------------------------------------- what trains


def test_trainable_parameter_sets_are_exact():
    clf = GPTClassifier(tiny_gpt(n_layer=3), 2)
    names = [n for n, _ in clf.named_parameters()]
    head = ["classifier.weight", "classifier.bias"]
    assert clf.set_trainable("head") == head
    assert [n for n, p in clf.named_parameters() if p.requires_grad] == head

    everything_but_lm_head = [n for n in names if n != "gpt.lm_head.weight"]
    assert clf.set_trainable("all") == everything_but_lm_head
    assert any(n.startswith("gpt.transformer.wte") for n in everything_but_lm_head)

    last = clf.set_trainable("last_block")
    assert last == [n for n in names if n.startswith(("gpt.transformer.h.2.", "gpt.transformer.ln_f."))] + head
    assert not any(n.startswith(("gpt.transformer.h.0.", "gpt.transformer.h.1.", "gpt.transformer.wte")) for n in last)

    trainable, total = count_parameters(clf)
    assert trainable == sum(p.numel() for n, p in clf.named_parameters() if n in last) and total > trainable
    with pytest.raises(ValueError, match="mode must be one of"):
        clf.set_trainable("body")


def test_head_only_step_changes_only_the_head():
    clf = GPTClassifier(tiny_gpt(), 2)
    clf.set_trainable("head")
    before = {n: p.detach().clone() for n, p in clf.named_parameters()}
    opt = make_adamw(clf, Trainer.get_default_config())  # weight decay on too: frozen weights must not decay
    _, loss = clf(torch.randint(4, VOCAB, (4, 6)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    changed = {n for n, p in clf.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"classifier.weight", "classifier.bias"}


# ---------------------------------------------------------------------------------------------- data


def test_classification_dataset_pads_truncates_and_keeps_labels():
    vocab = WordVocab.build(["the film is great", "the film is bad"], lowercase=True)
    ds = ClassificationDataset(["The film is GREAT", "bad", "", "the film is great the film is bad"], [1, 0, 1, 0],
                               vocab, max_len=6)
    assert len(ds) == 4
    x, y = ds[0]
    assert x.shape == (6,) and y.item() == 1
    assert x.tolist() == vocab.encode("the film is great") + [PAD_ID, PAD_ID]
    assert ds[2][0].tolist() == [UNK_ID] + [PAD_ID] * 5  # empty text -> one <unk>
    assert ds[3][0].tolist() == vocab.encode("the film is great the film")  # first max_len tokens
    assert ds.lengths.tolist() == [4, 1, 1, 6]
    with pytest.raises(ValueError, match="must pair up"):
        ClassificationDataset(["a", "b"], [1], vocab, 4)


def test_evaluate_matches_a_manual_pass():
    val = fixtures.smoke_sst2("validation")
    vocab = WordVocab.build(val["sentence"])
    clf = GPTClassifier(tiny_gpt(vocab=len(vocab)), 2)
    ds = ClassificationDataset(val["sentence"], val["label"], vocab, BLOCK)
    clf.train()
    got = evaluate(clf, torch.utils.data.DataLoader(ds, batch_size=7))  # batches of 7: a short last one
    assert clf.training, "evaluate must restore training mode"
    clf.eval()
    with torch.no_grad():
        logits, loss = clf(ds.x, ds.y)
    assert got["accuracy"] == pytest.approx((logits.argmax(-1) == ds.y).float().mean().item())
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-5) and got["count"] == len(ds)


def test_tokenize_batch_truncates_and_does_not_pad(gpt2_tokenizer):
    batch = {"sentence": ["a fine film .", "one two three four five six seven eight nine ten"], "label": [1, 0]}
    out = tokenize_batch(batch, gpt2_tokenizer, max_length=6)
    assert out["input_ids"] == [gpt2_tokenizer("a fine film .")["input_ids"],
                                gpt2_tokenizer(batch["sentence"][1])["input_ids"][:6]]
    assert out["attention_mask"] == [[1] * len(ids) for ids in out["input_ids"]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_collate_matches_data_collator_with_padding(gpt2_tokenizer, side):
    gpt2_tokenizer.padding_side = side
    try:
        texts = ["a fine film .", "dull", "the story never finds its feet , sadly ."]
        enc = tokenize_batch({"sentence": texts}, gpt2_tokenizer, max_length=64)
        features = [{"input_ids": i, "attention_mask": m, "label": y}
                    for i, m, y in zip(enc["input_ids"], enc["attention_mask"], [1, 0, 0])]
        want = DataCollatorWithPadding(gpt2_tokenizer)([dict(f) for f in features])
    finally:
        gpt2_tokenizer.padding_side = "right"
    got = pad_collate(features, gpt2_tokenizer.pad_token_id, padding_side=side)
    assert set(got) == {"input_ids", "attention_mask", "labels"}
    for key in got:
        assert torch.equal(got[key], want[key]), key
    assert got["input_ids"].shape == (3, max(len(i) for i in enc["input_ids"]))  # dynamic: the batch's longest
    with pytest.raises(ValueError, match="empty"):
        pad_collate([], 0)


# ---------------------------------------------------------------------------------------------- metrics


def test_accuracy_by_hand_and_against_torchmetrics():
    logits = torch.tensor([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0])  # right, right, wrong, wrong
    assert accuracy(logits, labels) == 0.5
    assert accuracy(logits.numpy(), labels.numpy()) == 0.5
    g = torch.Generator().manual_seed(0)
    for C in (2, 5):
        logits = torch.randn(101, C, generator=g)
        labels = torch.randint(C, (101,), generator=g)
        want = tm_accuracy(logits.argmax(-1), labels, task="multiclass", num_classes=C, average="micro").item()
        assert accuracy(logits, labels) == pytest.approx(want)
    assert accuracy(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.bfloat16), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        accuracy(torch.zeros(4), torch.zeros(4))


def test_compute_metrics_reads_eval_predictions():
    logits = np.array([[0.2, 0.9], [3.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([1, 0, 0])
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == {"accuracy": pytest.approx(2 / 3)}
    extra = (logits, np.zeros((3, 4)))  # models that also return other outputs: logits come first
    assert compute_metrics(EvalPrediction(predictions=extra, label_ids=labels)) == {"accuracy": pytest.approx(2 / 3)}


def test_precision_is_fp32_off_cuda():
    assert precision_kwargs("cpu") == {"bf16": False, "fp16": False}


# ---------------------------------------------------------------------------------------------- end to end


def test_smoke_finetune_beats_chance(one_thread):
    train, val = fixtures.smoke_sst2("train"), fixtures.smoke_sst2("validation")
    vocab = WordVocab.build(train["sentence"], lowercase=True)
    train_ds = ClassificationDataset(train["sentence"], train["label"], vocab, BLOCK)
    val_ds = ClassificationDataset(val["sentence"], val["label"], vocab, BLOCK)
    clf = GPTClassifier(tiny_gpt(vocab=len(vocab)), 2)
    clf.set_trainable("all")
    tc = Trainer.get_default_config()
    tc.max_iters, tc.batch_size, tc.learning_rate, tc.progress, tc.device = 150, 32, 1e-3, False, "cpu"
    _, history = finetune(clf, train_ds, val_ds, tc, eval_interval=50)
    assert history["iter"].tolist() == [0, 50, 100, 150]
    assert history["val_acc"].iloc[-1] >= 0.85, history
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
