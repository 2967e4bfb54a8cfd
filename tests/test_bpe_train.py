"""BPE training: a hand-worked example, the plain and incremental loops agree, and the merges match the
`tokenizers` BPE trainer (Rust) for as long as no tie makes the choice arbitrary."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from labsupport import bpe, bpe_train

# The classic example (Sennrich et al. 2016), byte-level: the leading space makes every word start with "Ġ".
#   words: Ġlow x5, Ġlower x2, Ġnewest x6, Ġwidest x3
#   pairs: es 9, st 9 | we 8 | Ġl 7, lo 7, ow 7 | Ġn 6, ne 6, ew 6 | wi 3, id 3, de 3, Ġw 3 | er 2
#   1. (e,s) 9   -- ties with (s,t) 9; ("e","s") < ("s","t")
#   2. (es,t) 9  -- now es-t is 6+3 = 9; we drops to 2 (newest is n,e,w,es,t)
#   3. (l,o) 7   -- ties (Ġ,l), (l,o), (o,w) at 7; "l" < "o" < "Ġ" (U+0120)
#   4. (lo,w) 7  -- ties with (Ġ,lo) 7; "lo" < "Ġ"
#   5. (Ġ,low) 7
#   6. (e,w) 6   -- ties (Ġ,n), (n,e), (e,w), (w,est) at 6; "e" sorts first
#   7. (ew,est) 6  8. (n,ewest) 6  9. (Ġ,newest) 6
#  10. (d,est) 3 -- ties (Ġ,w), (w,i), (i,d), (d,est) at 3; "d" sorts first
#   then (i,dest), (w,idest), (Ġ,widest) at 3, then (e,r) and (Ġlow,er) at 2: 15 merges, every word whole.
HAND_CORPUS = " low low low low low lower lower newest newest newest newest newest newest widest widest widest"
HAND_MERGES = [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w"), ("Ġ", "low"), ("e", "w"), ("ew", "est"),
               ("n", "ewest"), ("Ġ", "newest"), ("d", "est")]
HAND_COUNTS = [9, 9, 7, 7, 7, 6, 6, 6, 6, 3]


def test_hand_worked_example():
    assert bpe_train.word_counts(HAND_CORPUS) == {
        ("Ġ", "l", "o", "w"): 5, ("Ġ", "l", "o", "w", "e", "r"): 2,
        ("Ġ", "n", "e", "w", "e", "s", "t"): 6, ("Ġ", "w", "i", "d", "e", "s", "t"): 3}
    model = bpe_train.train_bpe(HAND_CORPUS, 10)
    assert model.merges == HAND_MERGES and model.counts == HAND_COUNTS
    assert bpe_train.learn_merges(bpe_train.word_counts(HAND_CORPUS), 10) == HAND_MERGES
    assert model.tokenize(" lowest newer") == ["Ġlow", "est", "Ġ", "n", "ew", "e", "r"]
    assert model.vocab["Ġnewest"] == 256 + 8 and len(model.vocab) == 266


def test_training_stops_when_every_word_is_one_token():
    model = bpe_train.train_bpe(HAND_CORPUS, 1000)
    assert len(model.merges) == 15 and model.merges[-2:] == [("e", "r"), ("Ġlow", "er")]
    assert model.tokenize(HAND_CORPUS) == HAND_CORPUS.replace(" ", " Ġ").split()
    assert bpe_train.train_bpe(HAND_CORPUS, 0).merges == []


def test_count_pairs_and_merge_pair():
    words = {("a", "a", "a"): 2, ("b",): 4, ("a", "b", "a", "b"): 1}
    assert bpe_train.count_pairs(words) == {("a", "a"): 4, ("a", "b"): 2, ("b", "a"): 1}  # overlaps count
    merged = bpe_train.merge_pair(words, ("a", "a"))
    assert merged == {("aa", "a"): 2, ("b",): 4, ("a", "b", "a", "b"): 1}
    assert words[("a", "a", "a")] == 2  # input untouched
    assert bpe_train.merge_pair({("a", "b", "c"): 1, ("ab", "c"): 2}, ("a", "b")) == {("ab", "c"): 3}
    assert bpe_train.best_pair({("s", "t"): 9, ("e", "s"): 9, ("a", "b"): 1}) == ("e", "s")


words_strategy = st.dictionaries(st.text("abcĠé", min_size=1, max_size=7).map(tuple), st.integers(1, 20),
                                 max_size=12)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(words=words_strategy, n=st.integers(0, 30))
def test_incremental_training_equals_the_plain_loop(words, n):
    merges, counts = bpe_train._learn_merges_incremental(words, n)
    assert merges == bpe_train.learn_merges(words, n)
    current = dict(words)
    for pair, count in zip(merges, counts):  # each recorded count is the pair's count at that step
        assert bpe_train.count_pairs(current)[pair] == count
        current = bpe_train.merge_pair(current, pair)


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(texts=st.lists(st.text(max_size=30), max_size=5), n=st.integers(0, 40))
def test_tokenize_covers_any_text(texts, n):
    model = bpe_train.train_bpe(texts, n)
    for text in texts + ["unseen 🤗 text\n"]:
        tokens = model.tokenize(text)
        table = bpe.bytes_to_unicode()
        assert "".join(tokens) == "".join(table[b] for b in text.encode("utf-8"))
        assert len(model.encode(text)) == len(tokens)


def _untied_prefix(words, n):
    """How many merges the plain loop makes before the top pair count is first shared by two pairs."""
    for k in range(n):
        pairs = bpe_train.count_pairs(words)
        top = sorted(pairs.values(), reverse=True)
        if not pairs or (len(top) > 1 and top[0] == top[1]):
            return k
        words = bpe_train.merge_pair(words, bpe_train.best_pair(pairs))
    return n


@pytest.mark.parametrize("seed", [0, 3])
def test_merges_match_the_tokenizers_trainer_until_the_first_tie(seed):
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 9))) for _ in range(40)]
    text = " ".join(w for w in vocab for _ in range(rng.randint(1, 2000)))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=256 + 100, min_frequency=0, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    theirs = [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    k = _untied_prefix(bpe_train.word_counts(text), 100)
    assert k >= 15, "corpus has too many ties to compare"
    assert bpe_train.train_bpe(text, 100).merges[:k] == theirs[:k]


def test_list_corpus_counts_words_per_text():
    assert bpe_train.word_counts(["ab ab", "ab"]) == {("a", "b"): 2, ("Ġ", "a", "b"): 1}


@pytest.mark.parametrize("bad", [b"bytes", 42, None, ["ok", 3]])
def test_bad_corpus_raises_type_error(bad):
    with pytest.raises(TypeError, match="corpus must be a str or an iterable of str"):
        bpe_train.train_bpe(bad, 5)


def test_bad_num_merges():
    with pytest.raises(TypeError, match="num_merges must be an int"):
        bpe_train.train_bpe("text", 2.5)
    with pytest.raises(ValueError, match="num_merges must be >= 0"):
        bpe_train.train_bpe("text", -1)
    with pytest.raises(TypeError, match="tokenize\\(\\) takes a str"):
        bpe_train.train_bpe("text", 1).tokenize(b"text")
