"""Self-checks for Lab 01 (tokenization). Each compares the student's function(s) with a reference
on small fixed inputs, edge cases included; references for 01.3-01.5 live in `labsupport.bpe_train`."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable

from labsupport import bpe_train
from labsupport.check import exercise, expect_equal, short

UNK = "<unk>"

# ---------------------------------------------------------------------------------------------- references


def ref_build_word_vocab(texts: list[str], max_size: int) -> dict[str, int]:
    """"<unk>" -> 0, then the max_size - 1 most frequent `str.split()` words (ties: alphabetical)."""
    counts = Counter(w for text in texts for w in text.split())
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max(max_size - 1, 0)]
    return {UNK: 0, **{w: i + 1 for i, w in enumerate(ranked)}}


def ref_encode_words(text: str, vocab: dict[str, int]) -> list[int]:
    return [vocab.get(w, vocab[UNK]) for w in text.split()]


def ref_build_char_vocab(texts: list[str]) -> dict[str, int]:
    """"<unk>" -> 0, then every distinct character (spaces and newlines included) in sorted order."""
    chars = sorted(set("".join(texts)))
    return {UNK: 0, **{c: i + 1 for i, c in enumerate(chars)}}


def ref_encode_chars(text: str, vocab: dict[str, int]) -> list[int]:
    return [vocab.get(c, vocab[UNK]) for c in text]




# ---------------------------------------------------------------------------------------------- inputs

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "a cat is not a dog . the end"]
HAND_CORPUS = " low low low low low lower lower newest newest newest newest newest newest widest widest widest"
HAND_WORDS = bpe_train.word_counts(HAND_CORPUS)  # {("Ġ","l","o","w"): 5, ...}
SENTENCE = "Your drawing is charmingly anachronistic. Running is cool; running is very cool! 1999, 2024 ..."
PAIR_CASES: list[dict[tuple[str, ...], int]] = [
    HAND_WORDS,
    {("a", "a", "a"): 2, ("a",): 7, ("b", "a", "a", "a", "a"): 1},  # overlapping pairs, one-symbol word
    {},
    bpe_train.word_counts(SENTENCE),
]


# ---------------------------------------------------------------------------------------------- checks


@exercise("01.1", title="word vocabulary with <unk>",
          hint='vocab = {"<unk>": 0} + the max_size-1 most frequent words, sorted by (-count, word); '
               'encode_words maps each text.split() word to vocab.get(word, vocab["<unk>"])')
def check_word_vocab(build_word_vocab: Callable, encode_words: Callable) -> str:
    for texts, size in [(TEXTS, 6), (TEXTS, 1), (TEXTS, 100), ([], 5), (["b a", "a b", "c"], 3)]:
        expect_equal(build_word_vocab(copy.deepcopy(texts), size), ref_build_word_vocab(texts, size),
                f"build_word_vocab({short(texts, 60)}, max_size={size})")
    vocab = ref_build_word_vocab(TEXTS, 6)
    for text in ["the cat sat", "the zebra sat on a mat", "", "  the\n\tdog  ", "The cat"]:
        expect_equal(encode_words(text, dict(vocab)), ref_encode_words(text, vocab), f"encode_words({text!r}, vocab)")
    odd = {"hello": 0, "world": 1, UNK: 7}  # the <unk> id comes from the vocab, not a hard-coded 0
    expect_equal(encode_words("hello there world", dict(odd)), [0, 7, 1], f"encode_words('hello there world', {odd})")
    return "vocabularies and <unk> ids match the reference"


@exercise("01.2", title="character vocabulary",
          hint='vocab = {"<unk>": 0} + sorted(set of all characters) with ids 1, 2, ...; '
               'encode_chars gives one id per character, unknown ones -> vocab["<unk>"]')
def check_char_vocab(build_char_vocab: Callable, encode_chars: Callable) -> str:
    for texts in [TEXTS, ["héllo wörld 🤗", "line one\nline two\t!"], [], [""]]:
        expect_equal(build_char_vocab(list(texts)), ref_build_char_vocab(texts),
                     f"build_char_vocab({short(texts, 60)})")
    vocab = ref_build_char_vocab(TEXTS)
    for text in ["the cat", "", "THE CAT!", "a  b\n", "🤗"]:
        expect_equal(encode_chars(text, dict(vocab)), ref_encode_chars(text, vocab), f"encode_chars({text!r}, vocab)")
    return "character vocabularies and ids match the reference"


@exercise("01.3", title="count adjacent pairs",
          hint="for each word and count n: for each pair in zip(word, word[1:]): counts[pair] += n")
def check_count_pairs(count_pairs: Callable) -> str:
    for words in PAIR_CASES:
        before = dict(words)
        got = count_pairs(dict(words))
        expect_equal(dict(got), dict(bpe_train.count_pairs(words)), f"count_pairs({short(words, 80)})")
        expect_equal(dict(words), before, "count_pairs must not change its input")
    return f"{len(PAIR_CASES)} word-count dicts counted correctly"


@exercise("01.4", title="merge one pair",
          hint="scan each word left to right; where (word[i], word[i+1]) == pair append word[i] + word[i+1] and "
               "skip 2, else append word[i]; return a new dict")
def check_merge_pair(merge_pair: Callable) -> str:
    cases = [(HAND_WORDS, ("e", "s")), (PAIR_CASES[1], ("a", "a")), (HAND_WORDS, ("x", "y")), ({}, ("a", "b")),
             (bpe_train.merge_pair(HAND_WORDS, ("e", "s")), ("es", "t")), (PAIR_CASES[3], ("i", "n"))]
    for words, pair in cases:
        snapshot = copy.deepcopy(words)
        got = merge_pair(copy.deepcopy(words), pair)
        expect_equal(dict(got), bpe_train.merge_pair(words, pair), f"merge_pair({short(words, 80)}, {pair})")
        inp = copy.deepcopy(words)
        merge_pair(inp, pair)
        expect_equal(inp, snapshot, "merge_pair must return a new dict and leave its input unchanged")
    return f"{len(cases)} merges match the reference (overlaps included)"


@exercise("01.5", title="learn BPE merges",
          hint="repeat num_merges times: pairs = count_pairs(words); stop if empty; best = the highest count, "
               "ties -> min(pair); words = merge_pair(words, best)")
def check_learn_merges(learn_merges: Callable) -> str:
    cases = [(HAND_WORDS, 10), (HAND_WORDS, 0), (HAND_WORDS, 100), (PAIR_CASES[1], 5), (PAIR_CASES[3], 40),
             ({("b", "a"): 1, ("a", "b"): 1}, 1)]
    for words, n in cases:
        got = learn_merges(copy.deepcopy(words), n)
        expect_equal([tuple(p) for p in got], bpe_train.learn_merges(words, n),
                f"learn_merges({short(words, 60)}, num_merges={n})")
    return "merges match the reference, tie-break and early stop included"
