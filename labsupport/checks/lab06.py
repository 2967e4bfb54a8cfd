"""Self-checks for Lab 06 (LSTM language model on IMDB).

06.1: the student's dataset and collate function against chunks computed here and `textdata.lm_collate_fn`, on
ragged batches, and the loss of a padded batch against the unpadded sequences'. 06.2: the student's LSTM model
gets the reference model's weights (same names, same parameter count) and must give its logits and loss; its
<pad> embedding must stay zero under training; then it is trained for real on a tiny Markov-chain corpus and
must beat the unigram baseline. 06.3: the pad-masked loss against `labsupport.lstm.lm_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from labsupport import lstm
from labsupport.check import Records, Trace, WrongAnswer, exercise, expect_close
from labsupport.config import CfgNode
from labsupport.core import IGNORE_INDEX
from labsupport.evaluation import evaluate
from labsupport.runtime import rng_state, set_rng_state
from labsupport.textdata import PAD_ID, lm_collate_fn
from labsupport.trainer import Trainer

# Imported lazily by an optimizer's first step (06.2 trains a model): the grader's runner imports these once
# before it forks a process per exercise, so that no exercise pays for them (python -m grading.worker)
PRELOAD = ("torch._dynamo",)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _got(got: Records, label: str) -> object:
    if label not in got:
        raise WrongAnswer(f"{label}: no result recorded")
    return got[label]


# ---------------------------------------------------------------------------------------------- 06.1


def _chunks(sequences: list[list[int]], seq_len: int) -> list[tuple[list[int], list[int]]]:
    """The reference items: each sequence cut into chunks of <= seq_len + 1 tokens sharing one boundary token."""
    out = []
    for s in sequences:
        for start in range(0, len(s) - 1, seq_len):
            chunk = s[start: start + seq_len + 1]
            out.append((chunk[:-1], chunk[1:]))
    return out


class ReferenceDataset(Dataset):
    """Exercise 06.1's dataset, solved (the graded reference)."""

    def __init__(self, sequences, seq_len: int):
        self.sequences = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
        self.seq_len = seq_len
        self.chunks = [(i, start) for i, s in enumerate(self.sequences) for start in range(0, len(s) - 1, seq_len)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, start = self.chunks[i]
        chunk = self.sequences[s][start: start + self.seq_len + 1]
        return chunk[:-1], chunk[1:]


def reference_collate(batch: list, pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 06.1's collate function, solved (the graded reference)."""
    return lm_collate_fn(pad_id=pad_id, ignore_index=IGNORE_INDEX)(batch)


_g2 = _gen(2)
PIPELINE_SEQS = [torch.randint(4, 30, (n,), generator=_g2).tolist() for n in (2, 5, 9, 17, 3, 12)]
PIPELINE_LOGITS = torch.randn(4, 8, 30, generator=_g2)
RAGGED = [(list(x), list(y)) for x, y in _chunks(PIPELINE_SEQS, 8)]


def _as_pair(item: object, what: str) -> tuple[object, object]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise WrongAnswer(f"{what} must be a pair (x, y), got {type(item).__name__}")
    return item[0], item[1]


@exercise("06.1", title="the language-modelling data pipeline",
          hint="a chunk of n + 1 tokens gives n predictions: the input is all but its last token, the target all but "
               "its first; a batch is as wide as its longest input, shorter rows are filled at the end (inputs with "
               "<pad>, targets with the value the loss skips)",
          hint2="self.chunks[i] gives (sequence index, start); slice start : start + seq_len + 1; in the collate, "
                "torch.full((B, T), value) and assign each row's prefix; IGNORE_INDEX is -100",
          reference=["labsupport.checks.lab06:ReferenceDataset", "labsupport.checks.lab06:reference_collate"])
def drive_data_pipeline(t: Trace, LanguageModelingDataset: type, lm_collate_fn: Callable) -> None:
    for seq_len in (4, 8, 16):
        ds = LanguageModelingDataset([list(s) for s in PIPELINE_SEQS], seq_len)
        t.record(f"len(dataset) with seq_len={seq_len} (6 sequences of lengths 2, 5, 9, 17, 3, 12)", len(ds))
        for i in range(min(len(ds), 30)):
            x, y = _as_pair(ds[i], f"dataset[{i}]")
            t.record(f"seq_len={seq_len}: dataset[{i}] = (x, y), y shifted by one", (x, y))
    items = [(torch.tensor(x), torch.tensor(y)) for x, y in RAGGED]
    for name, batch in (("items 0-2", items[:3]), ("items 2-6", items[2:7]), ("item 5 alone", items[5:6]),
                        ("all items, reversed", items[::-1])):
        X, Y = _as_pair(lm_collate_fn([(x.clone(), y.clone()) for x, y in batch]), "lm_collate_fn(batch)")
        t.record(f"lm_collate_fn({name}): X, inputs right-padded with <pad> ({PAD_ID})", X)
        t.record(f"lm_collate_fn({name}): Y, targets right-padded with IGNORE_INDEX ({IGNORE_INDEX})", Y)
    X, Y = lm_collate_fn([(x.clone(), y.clone()) for x, y in items[:4]])
    if isinstance(Y, torch.Tensor) and Y.shape == PIPELINE_LOGITS.shape[:2]:
        t.record("the cross-entropy of a padded batch (must equal the unpadded one)",
                 F.cross_entropy(PIPELINE_LOGITS.flatten(0, 1), Y.flatten(), ignore_index=IGNORE_INDEX))


# ---------------------------------------------------------------------------------------------- 06.2


def markov_sequences(n: int, vocab_size: int, seed: int) -> list[list[int]]:
    """<bos> then tokens that mostly follow t -> t + 1 (wrapping over 4 .. V-1), then <eos>: easy for an LM,
    while every word is about equally frequent, so a unigram model is nearly uniform."""
    g = _gen(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(6, 16, (), generator=g))
        t = int(torch.randint(4, vocab_size, (), generator=g))
        seq = [2]
        for _ in range(length):
            seq.append(t)
            jump = torch.rand((), generator=g) < 0.1
            t = int(torch.randint(4, vocab_size, (), generator=g)) if jump else 4 + (t - 3) % (vocab_size - 4)
        out.append(seq + [3])
    return out


LSTM_CONFIG = dict(vocab_size=23, embed_dim=8, hidden_size=12, num_layers=1, dropout=0.0, pad_id=PAD_ID)
_g3 = _gen(3)
LSTM_IDX = torch.randint(0, 23, (3, 7), generator=_g3)
LSTM_IDX[1, 4:] = PAD_ID
LSTM_TARGETS = torch.randint(4, 23, (3, 7), generator=_g3)
LSTM_TARGETS[1, 3:] = PAD_ID
LSTM_TARGETS[2, 5:] = IGNORE_INDEX
MARKOV_TRAIN, MARKOV_TEST = markov_sequences(96, 23, seed=4), markov_sequences(32, 23, seed=5)


def _set_weights(model: torch.nn.Module) -> None:
    """Deterministic weights by parameter name, so the student's and the reference model agree whatever order
    their layers were created in; the <pad> row stays zero."""
    g = _gen(7)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
        emb = getattr(model, "embedding", None)
        if isinstance(emb, torch.nn.Embedding):
            emb.weight[PAD_ID] = 0.0


@exercise("06.2", title="the LSTM language model",
          hint="three layers in a row: a lookup table of word vectors whose <pad> row stays zero, a recurrent layer "
               "that reads the sequence left to right with the batch dimension first, and a linear map from each "
               "hidden state to one score per word",
          hint2="nn.Embedding(..., padding_idx=...), nn.LSTM(..., batch_first=True) (it returns (output, (h, c))), "
                "nn.Linear; names embedding, lstm, head; lstm.lm_loss for the loss",
          reference=["labsupport.lstm:LSTMLanguageModel"], options={"atol": 1e-5, "rtol": 1e-5})
def drive_lstm_model(t: Trace, LSTMLanguageModel: type) -> None:
    if not isinstance(LSTMLanguageModel, type):
        raise WrongAnswer("pass the class itself (labsupport.check('06.2', LSTMLanguageModel))")
    model = LSTMLanguageModel(CfgNode(**LSTM_CONFIG)).eval()
    t.record("parameter names and shapes (V=23, embedding 8, hidden 12, one layer)",
             sorted((n, list(p.shape)) for n, p in model.named_parameters()))
    emb = getattr(model, "embedding", None)
    t.record("embedding.padding_idx", emb.padding_idx if isinstance(emb, torch.nn.Embedding) else None)
    _set_weights(model)
    with torch.no_grad():
        out = model(LSTM_IDX.clone())
        logits, loss = _as_pair(out, "forward(idx)")
        t.record("forward(idx) logits, shape (B, T, V)", logits)
        t.record("forward(idx) without targets returns loss None", loss is None)
        t.record("forward(idx, targets) loss (targets equal to <pad> or -100 ignored)",
                 _as_pair(model(LSTM_IDX.clone(), LSTM_TARGETS.clone()), "forward(idx, targets)")[1])
    # trained for real: the <pad> row stays zero and the model beats the unigram baseline
    rng = rng_state()  # the Trainer seeds python, numpy and torch: the student's own random streams stay as they were
    try:
        torch.manual_seed(1)
        model = LSTMLanguageModel(CfgNode(**LSTM_CONFIG))
        config = Trainer.get_default_config()  # Adam (AdamW without decay), lr 2e-2, 6 epochs, on the CPU
        config.merge_from_dict(dict(device="cpu", max_epochs=6, learning_rate=2e-2, betas=(0.9, 0.999),
                                    weight_decay=0.0, progress=False, amp=False))
        Trainer(config, model, lstm.make_loader(MARKOV_TRAIN, 16, seed=0)).run()
    finally:
        set_rng_state(rng)
    t.record("after 6 epochs of training the <pad> embedding is still zero",
             bool(model.embedding.weight[PAD_ID].abs().max() == 0))
    ppl = evaluate(model, lstm.make_loader(MARKOV_TEST, 16, shuffle=False, bucket=False))["perplexity"]
    unigram = lstm.unigram_perplexity(MARKOV_TRAIN, MARKOV_TEST, 23)
    t.record(f"trained on a tiny corpus, test perplexity below 0.6 x the unigram baseline ({unigram:.1f})",
             bool(ppl < 0.6 * unigram))


# ---------------------------------------------------------------------------------------------- 06.3


def _loss_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = _gen(1)
    cases = []
    for B, T, V, pad_id in [(2, 5, 7, 1), (3, 4, 11, 0), (1, 6, 5, 4), (4, 8, 13, 1)]:
        logits = torch.randn(B, T, V, generator=g) * 3
        targets = torch.randint(0, V, (B, T), generator=g)
        targets[0, T // 2:] = pad_id  # a padded tail
        if B > 2:
            targets[1] = pad_id  # a row that is all padding
        cases.append((logits, targets, pad_id))
    return cases


LOSS_CASES = _loss_cases()


def _judge_loss(got: Records, want: Records) -> str:
    for logits, targets, pad_id in LOSS_CASES:
        what = f"loss for logits {tuple(logits.shape)}, pad_id={pad_id}"
        g, w = _got(got, f"{what}: loss"), want[f"{what}: loss"].item()
        if type(g) is not torch.Tensor or g.dim() != 0:
            raise WrongAnswer(f"return a 0-d tensor (the mean loss), got {str(g)[:60]}")
        counted = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
        if math.isclose(g.item(), counted, rel_tol=1e-5) and not math.isclose(counted, w, rel_tol=1e-5):
            raise WrongAnswer(f"your loss {g.item():.4f} counts the pad positions (pad_id={pad_id}); "
                              f"without them it is {w:.4f}")
        expect_close(g.item(), w, what, rtol=1e-5, atol=1e-5)
        if _got(got, f"{what}: differentiable") is not True:
            raise WrongAnswer("the loss must stay differentiable (no .item(), no numpy)")
        if _got(got, f"{what}: largest gradient at a pad position") != 0.0:
            raise WrongAnswer("pad positions must get no gradient (they must not be in the loss at all)")
    return f"{len(LOSS_CASES)} losses match the reference and pads get no gradient"


@exercise("06.3", title="cross-entropy that ignores pads",
          hint="the mean must run over the real targets only: a pad target adds nothing to the sum and is not "
               "counted in the denominator",
          hint2="F.cross_entropy takes (N, V) logits, (N,) targets and an ignore_index; or reduction='none' and a "
                "mask targets != pad_id",
          reference=["labsupport.lstm:lm_loss"], judge=_judge_loss)
def drive_masked_loss(t: Trace, masked_lm_loss: Callable) -> None:
    for logits, targets, pad_id in LOSS_CASES:
        what = f"loss for logits {tuple(logits.shape)}, pad_id={pad_id}"
        leaf = logits.clone().requires_grad_(True)
        got = masked_lm_loss(leaf, targets.clone(), pad_id)
        ok = type(got) is torch.Tensor
        t.record(f"{what}: loss", got.detach() if ok else got)
        t.record(f"{what}: differentiable", ok and got.requires_grad)
        pad_grad = float("inf")
        if ok and got.requires_grad and got.dim() == 0:
            got.backward()
            if leaf.grad is not None:
                pad_grad = float(leaf.grad[targets == pad_id].abs().max())
        t.record(f"{what}: largest gradient at a pad position", pad_grad)
