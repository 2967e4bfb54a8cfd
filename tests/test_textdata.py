import random

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from labsupport.textdata import (
    IGNORE_INDEX,
    PAD_ID,
    SPECIALS,
    BucketBatchSampler,
    CharVocab,
    LanguageModelingDataset,
    Vocab,
    WordVocab,
    encode_documents,
    lm_collate_fn,
    load_corpus,
    pad_fraction,
)

TEXT = "the cat sat on the mat\nthe dog sat on the log\nthe end"


def test_specials_have_fixed_ids():
    for vocab in (WordVocab.build(TEXT), CharVocab.build(TEXT)):
        assert vocab.itos[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"] == list(SPECIALS)
        assert (vocab.unk_id, vocab.pad_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
        assert all(vocab.stoi[t] == i for i, t in enumerate(vocab.itos))


def test_word_round_trip_and_unknown():
    vocab = WordVocab.build(TEXT)
    text = "the dog sat on the mat"
    ids = vocab.encode(text)
    assert len(ids) == 6 and 0 not in ids
    assert vocab.decode(ids) == text
    ids = vocab.encode("the zebra sat  on\nthe  mat")  # unknown word; any whitespace separates words
    assert ids[1] == vocab.unk_id
    assert vocab.decode(ids) == "the <unk> sat on the mat"
    assert vocab.decode([vocab.bos_id, *ids, vocab.eos_id], skip_specials=True) == "the sat on the mat"
    assert vocab.decode(torch.tensor(ids)) == vocab.decode(ids)


def test_char_round_trip_and_unknown():
    vocab = CharVocab.build(TEXT)
    assert vocab.decode(vocab.encode(TEXT)) == TEXT
    assert "\n" in vocab and " " in vocab
    ids = vocab.encode("cat!")
    assert ids[-1] == vocab.unk_id and vocab.decode(ids) == "cat<unk>"
    assert vocab.decode(ids, skip_specials=True) == "cat"


def test_min_freq_keeps_counts_at_or_above_threshold():
    text = "a " * 6 + "b " * 5 + "c " * 7 + "d"
    vocab = WordVocab.build(text, min_freq=6)  # Lab 06: "frequency > 5"
    assert vocab.itos[4:] == ["c", "a"]  # most frequent first
    assert vocab.encode("b d") == [0, 0]
    assert WordVocab.build(text).itos[4:] == ["c", "a", "b", "d"]  # min_freq=1 keeps everything


def test_max_size_counts_regular_tokens_only_and_ties_are_deterministic():
    texts = ["z y x", "x y", "w"]  # x:2 y:2 z:1 w:1
    vocab = WordVocab.build(texts, max_size=3)
    assert len(vocab) == 3 + 4
    assert vocab.itos[4:] == ["x", "y", "w"]  # ties by token string
    assert WordVocab.build(list(reversed(texts)), max_size=3).itos == vocab.itos
    assert len(WordVocab.build(texts, max_size=0)) == 4


def test_build_from_iterable_equals_build_from_joined_text():
    lines = TEXT.split("\n")
    assert WordVocab.build(iter(lines)).itos == WordVocab.build(TEXT).itos


def test_lowercase_applies_to_build_and_encode():
    vocab = WordVocab.build("The the THE cat", lowercase=True)
    assert vocab.itos[4:] == ["the", "cat"]
    assert vocab.encode("THE Cat") == [4, 5]


def test_literal_special_tokens_in_text_map_to_special_ids():
    vocab = WordVocab.build("a <unk> b <eos>")
    assert vocab.itos[4:] == ["a", "b"]
    assert vocab.encode("<unk> a <eos>") == [0, 4, 3]


@pytest.mark.parametrize("cls", [WordVocab, CharVocab])
def test_save_load_round_trip(tmp_path, cls):
    vocab = cls.build(TEXT, lowercase=True)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = cls.load(path)
    assert type(loaded) is cls and loaded.itos == vocab.itos and loaded.lowercase
    assert type(Vocab.load(path)) is cls
    assert loaded.encode("The Cat") == vocab.encode("The Cat")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_load_rejects_wrong_kind_and_bad_files(tmp_path):
    path = tmp_path / "v.json"
    WordVocab.build(TEXT).save(path)
    with pytest.raises(ValueError, match="WordVocab.load"):
        CharVocab.load(path)
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a vocabulary"):
        Vocab.load(tmp_path / "bad.json")


def test_bad_vocab_args():
    with pytest.raises(ValueError, match="min_freq"):
        WordVocab.build(TEXT, min_freq=0)
    with pytest.raises(ValueError, match="max_size"):
        WordVocab.build(TEXT, max_size=-1)
    with pytest.raises(ValueError, match="unique"):
        WordVocab(["a", "a"])
    with pytest.raises(ValueError, match="special"):
        WordVocab(["<pad>", "a"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        WordVocab.build(TEXT).decode([999])
    with pytest.raises(TypeError, match="encode_documents"):
        WordVocab.build(TEXT).encode(["a list"])


def test_load_corpus_smoke():
    text = load_corpus("train", level="char")
    assert isinstance(text, str) and len(text) > 1000 and "\n" in text
    assert load_corpus("validation", level="word") != text
    assert len(WordVocab.build(text)) > 50
    with pytest.raises(ValueError, match="level"):
        load_corpus("train", level="bpe")


def test_lm_dataset_shift_and_coverage():
    ids = list(range(23))
    ds = LanguageModelingDataset(ids, seq_len=5)
    assert len(ds) == 4  # (23 - 1) // 5
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (5,)
        assert torch.equal(y[:-1], x[1:]) and x[0].item() == 5 * i and y[-1].item() == 5 * i + 5
    targets = torch.cat([ds[i][1] for i in range(len(ds))])
    assert torch.equal(targets, torch.arange(1, 21))  # each target exactly once
    assert torch.equal(ds[-1][0], ds[3][0])
    with pytest.raises(IndexError):
        ds[4]
    sliding = LanguageModelingDataset(torch.arange(10), seq_len=4, stride=1)
    assert len(sliding) == 6 and torch.equal(sliding[5][1], torch.tensor([6, 7, 8, 9]))
    x, y = next(iter(DataLoader(ds, batch_size=3)))
    assert x.shape == (3, 5) and torch.equal(x[:, 1:], y[:, :-1])


def test_lm_dataset_bad_args():
    with pytest.raises(ValueError, match="seq_len"):
        LanguageModelingDataset([1, 2, 3], seq_len=0)
    with pytest.raises(ValueError, match="at least seq_len"):
        LanguageModelingDataset([1, 2, 3], seq_len=3)
    with pytest.raises(ValueError, match="stride"):
        LanguageModelingDataset([1, 2, 3], seq_len=1, stride=0)


def test_collate_pads_inputs_with_pad_and_targets_with_ignore_index():
    collate = lm_collate_fn(pad_id=PAD_ID)
    x, y = collate([torch.tensor([2, 5, 6, 7, 3]), [2, 8, 3]])
    assert torch.equal(x, torch.tensor([[2, 5, 6, 7], [2, 8, PAD_ID, PAD_ID]]))
    assert torch.equal(y, torch.tensor([[5, 6, 7, 3], [8, 3, IGNORE_INDEX, IGNORE_INDEX]]))
    x2, y2 = lm_collate_fn(pad_id=0, ignore_index=-1)([(torch.tensor([4, 5]), torch.tensor([5, 6])), ([7], [8])])
    assert torch.equal(x2, torch.tensor([[4, 5], [7, 0]])) and torch.equal(y2, torch.tensor([[5, 6], [8, -1]]))
    with pytest.raises(ValueError, match="same length"):
        collate([(torch.tensor([1, 2]), torch.tensor([1]))])
    with pytest.raises(ValueError, match=">= 2 tokens"):
        collate([[5]])


def test_padded_batch_loss_equals_unpadded_loss():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    seqs = [torch.randint(4, 40, (n,)) for n in (9, 4, 6)]
    x, y = lm_collate_fn(PAD_ID)(seqs)
    with torch.no_grad():
        logits = model(x).logits  # (B, T, V)
        padded = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
        total = sum(F.cross_entropy(model(s[None, :-1]).logits[0], s[1:], reduction="sum") for s in seqs)
    assert torch.allclose(padded, total / sum(len(s) - 1 for s in seqs), atol=1e-5)


def test_encode_documents():
    vocab = WordVocab.build(TEXT)
    docs = encode_documents(["the cat sat on the mat", "the end"], vocab, max_len=5)
    assert docs[0] == [2, *vocab.encode("the cat sat"), 3]
    assert docs[1] == [2, *vocab.encode("the end"), 3]
    padded = encode_documents(["the cat sat on the mat", "the end"], vocab, max_len=5, pad_to=6)
    assert torch.tensor(padded).shape == (2, 6) and padded[1] == [*docs[1], PAD_ID, PAD_ID]
    assert encode_documents(["the cat sat"], vocab, max_len=2, add_bos_eos=False) == [vocab.encode("the cat")]
    with pytest.raises(ValueError, match="max_len"):
        encode_documents(["a"], vocab, max_len=2)
    with pytest.raises(ValueError, match="pad_to"):
        encode_documents(["a"], vocab, max_len=5, pad_to=4)
    with pytest.raises(TypeError, match="list of strings"):
        encode_documents("the cat", vocab, max_len=5)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n,batch_size", [(103, 8), (16, 4), (5, 10)])
def test_bucket_sampler_covers_every_index_once(shuffle, n, batch_size):
    rng = random.Random(n)
    lengths = [rng.randint(1, 50) for _ in range(n)]
    sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=1, pool_factor=3)
    for _ in range(2):  # two epochs
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)


def test_bucket_sampler_groups_lengths_and_is_reproducible():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(400)]
    sampler = BucketBatchSampler(lengths, 16, seed=3)
    first, second = list(sampler), list(sampler)
    assert first != second  # a new epoch reshuffles
    assert list(BucketBatchSampler(lengths, 16, seed=3)) == first  # same seed, same epoch -> same batches
    plain = list(BucketBatchSampler(lengths, 16, shuffle=False))
    assert all(lengths[b[-1]] <= lengths[c[0]] for b, c in zip(plain, plain[1:]))  # globally sorted
    random_batches = [list(range(i, i + 16)) for i in range(0, 400, 16)]
    assert pad_fraction(first, lengths) < 0.5 * pad_fraction(random_batches, lengths)
    dropped = list(BucketBatchSampler(lengths[:40], 16, drop_last=True))
    assert len(dropped) == 2 == len(BucketBatchSampler(lengths[:40], 16, drop_last=True))
    assert all(len(b) == 16 for b in dropped)


def test_bucket_sampler_with_dataloader_and_bad_args():
    vocab = WordVocab.build(TEXT)
    docs = encode_documents(TEXT.split("\n") * 3, vocab, max_len=8)
    loader = DataLoader(docs, batch_sampler=BucketBatchSampler([len(d) for d in docs], 4), collate_fn=lm_collate_fn())
    seen = sum(int((y != IGNORE_INDEX).sum()) for _, y in loader)
    assert seen == sum(len(d) - 1 for d in docs)
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError, match="empty"):
        BucketBatchSampler([], 2)
