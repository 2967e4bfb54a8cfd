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

from labsupport import lstm
from labsupport.check import exercise
from labsupport.config import CfgNode
from labsupport.lstm import lm_loss
from labsupport.textdata import IGNORE_INDEX, PAD_ID, lm_collate_fn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(got: object, want: float, what: str, tol: float = 1e-5) -> None:
    got = float(got.detach()) if isinstance(got, torch.Tensor) else got
    if not isinstance(got, float | int) or not math.isclose(got, want, rel_tol=tol, abs_tol=tol):
        raise AssertionError(f"{what}: expected {want:.6f}, got {got!r}")


# ---------------------------------------------------------------------------------------------- 06.1


def _chunks(sequences: list[list[int]], seq_len: int) -> list[tuple[list[int], list[int]]]:
    """The reference items: each sequence cut into chunks of <= seq_len + 1 tokens sharing one boundary token."""
    out = []
    for s in sequences:
        for start in range(0, len(s) - 1, seq_len):
            chunk = s[start: start + seq_len + 1]
            out.append((chunk[:-1], chunk[1:]))
    return out


def _pair(item: object, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise AssertionError(f"{what} must be a pair (x, y), got {type(item).__name__}")
    x, y = item
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.dtype != torch.long:
        raise AssertionError(f"{what}: x and y must be LongTensors, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    return x, y


@exercise("06.1", title="the language-modelling data pipeline",
          hint="a chunk of n + 1 tokens gives n predictions: the input is all but its last token, the target all but "
               "its first; a batch is as wide as its longest input, shorter rows are filled at the end (inputs with "
               "<pad>, targets with the value the loss skips)",
          hint2="self.chunks[i] gives (sequence index, start); slice start : start + seq_len + 1; in the collate, "
                "torch.full((B, T), value) and assign each row's prefix; IGNORE_INDEX is -100")
def check_data_pipeline(dataset_cls: type, collate: Callable) -> str:
    g = _gen(2)
    seqs = [torch.randint(4, 30, (n,), generator=g).tolist() for n in (2, 5, 9, 17, 3, 12)]
    for seq_len in (4, 8, 16):
        ds = dataset_cls(seqs, seq_len)
        want = _chunks(seqs, seq_len)
        if len(ds) != len(want):
            raise AssertionError(f"seq_len={seq_len}: expected {len(want)} items, got {len(ds)} "
                                 f"(did you change __init__?)")
        for i, (wx, wy) in enumerate(want):
            x, y = _pair(ds[i], f"dataset[{i}]")
            if x.tolist() != wx or y.tolist() != wy:
                raise AssertionError(f"seq_len={seq_len}, item {i}: expected x={wx}, y={wy}, got x={x.tolist()}, "
                                     f"y={y.tolist()} (y is x shifted by one; chunks hold seq_len + 1 tokens)")
    # ragged batches
    ref_collate = lm_collate_fn(pad_id=PAD_ID, ignore_index=IGNORE_INDEX)
    items = [(torch.tensor(x), torch.tensor(y)) for x, y in _chunks(seqs, 8)]
    for batch in (items[:3], items[2:7], items[5:6], items[::-1]):
        X, Y = _pair(collate([(x.clone(), y.clone()) for x, y in batch]), "lm_collate_fn(batch)")
        WX, WY = ref_collate(batch)
        for name, got, ref in (("X", X, WX), ("Y", Y, WY)):
            if got.shape != ref.shape:
                raise AssertionError(f"{name} for inputs of lengths {[len(x) for x, _ in batch]}: expected shape "
                                     f"{tuple(ref.shape)} (B, longest), got {tuple(got.shape)}")
            if not torch.equal(got, ref):
                row = int((got != ref).any(dim=1).nonzero()[0])
                fill = f"<pad> ({PAD_ID})" if name == "X" else f"IGNORE_INDEX ({IGNORE_INDEX})"
                raise AssertionError(f"{name} row {row}: expected {ref[row].tolist()}, got {got[row].tolist()} "
                                     f"(right-pad {name} with {fill})")
    # the padded batch's loss equals the loss over the unpadded targets
    X, Y = collate(items[:4])
    logits = torch.randn(*X.shape, 30, generator=g)
    loss = F.cross_entropy(logits.flatten(0, 1), Y.flatten(), ignore_index=IGNORE_INDEX)
    per_row = torch.cat([F.cross_entropy(logits[b, : len(y)], y, reduction="none")
                         for b, (_, y) in enumerate(items[:4])])
    _close(loss, per_row.mean().item(), "the loss of a padded batch (pads must be ignored)")
    return (f"{len(_chunks(seqs, 4)) + len(_chunks(seqs, 8)) + len(_chunks(seqs, 16))} chunks and 4 ragged batches "
            "match; the padded batch's loss equals the unpadded one")


# ---------------------------------------------------------------------------------------------- 06.2


def _config(vocab_size: int = 23, embed_dim: int = 8, hidden_size: int = 12) -> CfgNode:
    config = lstm.LSTMLanguageModel.get_default_config()
    config.merge_from_dict(dict(vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size))
    return config


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


@exercise("06.2", title="the LSTM language model",
          hint="three layers in a row: a lookup table of word vectors whose <pad> row stays zero, a recurrent layer "
               "that reads the sequence left to right with the batch dimension first, and a linear map from each "
               "hidden state to one score per word",
          hint2="nn.Embedding(..., padding_idx=...), nn.LSTM(..., batch_first=True) (it returns (output, (h, c))), "
                "nn.Linear; names embedding, lstm, head; lstm.lm_loss for the loss")
def check_lstm_model(model_cls: type) -> str:
    if not isinstance(model_cls, type):
        raise AssertionError(f"pass the class itself (labsupport.check('06.2', LSTMLanguageModel)), got "
                             f"{type(model_cls).__name__}")
    config = _config()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = lstm.LSTMLanguageModel(config).eval()
        model = model_cls(config).eval()
    n_ref, n_got = ref.num_parameters(), sum(p.numel() for p in model.parameters())
    if n_got != n_ref:
        raise AssertionError(f"the reference configuration (V=23, embedding 8, hidden 12, one layer) has {n_ref:,} "
                             f"parameters, yours {n_got:,}")
    try:
        model.load_state_dict(ref.state_dict())
    except RuntimeError as err:
        raise AssertionError(f"name the layers embedding, lstm and head: {str(err)[:200]}") from None
    emb = getattr(model, "embedding", None)
    if not isinstance(emb, torch.nn.Embedding) or emb.padding_idx != config.pad_id:
        raise AssertionError(f"the embedding needs padding_idx=config.pad_id ({config.pad_id}): the <pad> vector "
                             f"stays zero and never learns")
    g = _gen(3)
    idx = torch.randint(0, 23, (3, 7), generator=g)
    idx[1, 4:] = PAD_ID
    targets = torch.randint(4, 23, (3, 7), generator=g)
    targets[1, 3:] = PAD_ID
    targets[2, 5:] = IGNORE_INDEX
    with torch.no_grad():
        want_logits, want_loss = ref(idx, targets)
        out = model(idx)
        if not isinstance(out, tuple | list) or len(out) != 2 or out[1] is not None:
            raise AssertionError("forward(idx) must return (logits, None); forward(idx, targets) (logits, loss)")
        logits = out[0]
        if logits.shape != want_logits.shape:
            raise AssertionError(f"logits must be (B, T, V) = {tuple(want_logits.shape)}, got {tuple(logits.shape)}")
        if not torch.allclose(logits, want_logits, atol=1e-5, rtol=1e-5):
            raise AssertionError("with the reference weights your logits differ: embedding -> LSTM (batch_first, "
                                 "so it runs along T, not along the batch) -> head on every position")
        loss = model(idx, targets)[1]
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise AssertionError("forward(idx, targets) must return a scalar loss")
    _close(loss, want_loss.item(), "the loss (targets equal to <pad> or -100 must not count)")
    # training: the <pad> row stays zero, and the model beats the unigram baseline
    train, test = markov_sequences(96, 23, seed=4), markov_sequences(32, 23, seed=5)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = model_cls(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    loader = lstm.make_loader(train, 16, seed=0)
    for epoch in range(6):
        loader.batch_sampler.set_epoch(epoch)
        lstm.train_epoch(model, loader, optimizer, progress=False)
    if model.embedding.weight[config.pad_id].abs().max() > 0:
        raise AssertionError("after training the <pad> embedding is no longer zero: use padding_idx")
    ppl = lstm.evaluate(model, lstm.make_loader(test, 16, shuffle=False, bucket=False))["perplexity"]
    unigram = lstm.unigram_perplexity(train, test, 23)
    if not ppl < 0.6 * unigram:
        raise AssertionError(f"trained for 6 epochs on a tiny corpus, your model reaches perplexity {ppl:.1f}; the "
                             f"unigram baseline is {unigram:.1f} and the reference gets well below it")
    return (f"{n_got:,} parameters like the reference; same logits and loss; <pad> stays zero; trained: perplexity "
            f"{ppl:.1f} vs unigram {unigram:.1f}")


# ---------------------------------------------------------------------------------------------- 06.3


@exercise("06.3", title="cross-entropy that ignores pads",
          hint="the mean must run over the real targets only: a pad target adds nothing to the sum and is not "
               "counted in the denominator",
          hint2="F.cross_entropy takes (N, V) logits, (N,) targets and an ignore_index; or reduction='none' and a "
                "mask targets != pad_id")
def check_masked_loss(masked_lm_loss: Callable) -> str:
    g = _gen(1)
    cases = []
    for B, T, V, pad_id in [(2, 5, 7, 1), (3, 4, 11, 0), (1, 6, 5, 4), (4, 8, 13, 1)]:
        logits = torch.randn(B, T, V, generator=g) * 3
        targets = torch.randint(0, V, (B, T), generator=g)
        targets[0, T // 2:] = pad_id  # a padded tail
        if B > 2:
            targets[1] = pad_id  # a row that is all padding
        cases.append((logits, targets, pad_id))
    for logits, targets, pad_id in cases:
        want = lm_loss(logits, targets, pad_id)
        leaf = logits.clone().requires_grad_(True)
        got = masked_lm_loss(leaf, targets.clone(), pad_id)
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"return a 0-d tensor (the mean loss), got {got!r:.60}")
        counted = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
        if math.isclose(got.item(), counted, rel_tol=1e-5) and not math.isclose(counted, want.item(), rel_tol=1e-5):
            raise AssertionError(f"your loss {got.item():.4f} counts the pad positions (pad_id={pad_id}); "
                                 f"without them it is {want.item():.4f}")
        _close(got, want.item(), f"loss for logits {tuple(logits.shape)}, pad_id={pad_id}")
        if not got.requires_grad:
            raise AssertionError("the loss must stay differentiable (no .item(), no numpy)")
        got.backward()
        if leaf.grad is None or leaf.grad[targets == pad_id].abs().max() > 0:
            raise AssertionError("pad positions must get no gradient (they must not be in the loss at all)")
    return f"{len(cases)} losses match the reference and pads get no gradient"
