"""Lab 01's self-checks pass the reference solutions and catch typical wrong answers."""

from collections import Counter

import pytest

from labsupport import bpe_train
from labsupport.check import run_check
from labsupport.checks import lab01

# ---------------------------------------------------------------------------------------------- wrong answers


def vocab_ties_by_first_seen(texts, max_size):  # Counter.most_common keeps first-seen order on ties
    words = [w for w, _ in Counter(w for t in texts for w in t.split()).most_common(max_size - 1)]
    return {"<unk>": 0, **{w: i + 1 for i, w in enumerate(words)}}


def vocab_without_unk_slot(texts, max_size):  # max_size words plus <unk>: one too many
    return lab01.ref_build_word_vocab(texts, max_size + 1)


def encode_words_unk_zero(text, vocab):  # hard-codes the <unk> id
    return [vocab.get(w, 0) for w in text.split()]


def encode_words_split_on_space(text, vocab):  # text.split(" ") keeps empty strings and "\n"
    return [vocab.get(w, vocab["<unk>"]) for w in text.split(" ")]


def char_vocab_unsorted(texts):
    chars = list(dict.fromkeys("".join(texts)))
    return {"<unk>": 0, **{c: i + 1 for i, c in enumerate(chars)}}


def char_vocab_no_whitespace(texts):
    chars = sorted(set("".join(texts)) - {" ", "\n", "\t"})
    return {"<unk>": 0, **{c: i + 1 for i, c in enumerate(chars)}}


def encode_chars_skip_unknown(text, vocab):
    return [vocab[c] for c in text if c in vocab]


def count_pairs_unweighted(words):
    return Counter(p for w in words for p in zip(w, w[1:]))


def count_pairs_distinct(words):  # counts a pair once per word
    pairs = Counter()
    for w, n in words.items():
        for p in set(zip(w, w[1:])):
            pairs[p] += n
    return pairs


def merge_pair_overlapping(words, pair):  # "aaa" -> ("aa", "aa"): merges overlapping occurrences
    out = {}
    for w, n in words.items():
        new, i = [], 0
        while i < len(w):
            if i < len(w) - 1 and (w[i], w[i + 1]) == pair:
                new.append(w[i] + w[i + 1])
            elif not (i > 0 and (w[i - 1], w[i]) == pair):
                new.append(w[i])
            i += 1
        out[tuple(new)] = n
    return out


def merge_pair_in_place(words, pair):
    for w in list(words):
        words[bpe_train.merge_word(w, pair)] = words.pop(w)
    return words


def learn_merges_max_tie(words, num_merges):  # breaks ties towards the largest pair
    merges = []
    for _ in range(num_merges):
        pairs = bpe_train.count_pairs(words)
        if not pairs:
            break
        top = max(pairs.values())
        pair = max(p for p, n in pairs.items() if n == top)
        words = bpe_train.merge_pair(words, pair)
        merges.append(pair)
    return merges


def learn_merges_crashes_when_done(words, num_merges):  # no early stop: max() of an empty dict
    merges = []
    for _ in range(num_merges):
        pair = bpe_train.best_pair(bpe_train.count_pairs(words))
        words = bpe_train.merge_pair(words, pair)
        merges.append(pair)
    return merges


def not_implemented(*args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------- tests

REFERENCES = {
    "01.1": (lab01.ref_build_word_vocab, lab01.ref_encode_words),
    "01.2": (lab01.ref_build_char_vocab, lab01.ref_encode_chars),
    "01.3": (bpe_train.count_pairs,),
    "01.4": (bpe_train.merge_pair,),
    "01.5": (bpe_train.learn_merges,),
}

WRONG = [
    ("01.1", (vocab_ties_by_first_seen, lab01.ref_encode_words)),
    ("01.1", (vocab_without_unk_slot, lab01.ref_encode_words)),
    ("01.1", (lab01.ref_build_word_vocab, encode_words_unk_zero)),
    ("01.1", (lab01.ref_build_word_vocab, encode_words_split_on_space)),
    ("01.2", (char_vocab_unsorted, lab01.ref_encode_chars)),
    ("01.2", (char_vocab_no_whitespace, lab01.ref_encode_chars)),
    ("01.2", (lab01.ref_build_char_vocab, encode_chars_skip_unknown)),
    ("01.3", (count_pairs_unweighted,)),
    ("01.3", (count_pairs_distinct,)),
    ("01.4", (merge_pair_overlapping,)),
    ("01.4", (merge_pair_in_place,)),
    ("01.5", (learn_merges_max_tie,)),
    ("01.5", (learn_merges_crashes_when_done,)),
]


@pytest.mark.parametrize("ex", sorted(REFERENCES))
def test_reference_passes(ex):
    ok, msg = run_check(ex, *REFERENCES[ex])
    assert ok, msg


@pytest.mark.parametrize("ex,funcs", WRONG, ids=[f"{ex}-{'-'.join(f.__name__ for f in fs)}" for ex, fs in WRONG])
def test_wrong_answer_fails(ex, funcs):
    ok, msg = run_check(ex, *funcs)
    assert not ok and msg


@pytest.mark.parametrize("ex", sorted(REFERENCES))
def test_unfinished_exercise_fails_cleanly(ex):
    ok, msg = run_check(ex, *[not_implemented] * len(REFERENCES[ex]))
    assert not ok and "not implemented" in msg
