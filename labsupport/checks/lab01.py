"""Self-checks for Lab 01 (tokenization). Each driver calls the student's function(s) on small fixed inputs,
edge cases included, and records the results; they are compared with the same calls on the references
(below for 01.1-01.2, `labsupport.bpe_train` for 01.3-01.5). Protocol: labsupport/check.py."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable

from labsupport import bpe_train
from labsupport.check import Trace, exercise, short

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
MERGE_CASES = [(HAND_WORDS, ("e", "s")), (PAIR_CASES[1], ("a", "a")), (HAND_WORDS, ("x", "y")), ({}, ("a", "b")),
               (bpe_train.merge_pair(HAND_WORDS, ("e", "s")), ("es", "t")), (PAIR_CASES[3], ("i", "n"))]
LEARN_CASES = [(HAND_WORDS, 10), (HAND_WORDS, 0), (HAND_WORDS, 100), (PAIR_CASES[1], 5), (PAIR_CASES[3], 40),
               ({("b", "a"): 1, ("a", "b"): 1}, 1)]
WORD_VOCAB = ref_build_word_vocab(TEXTS, 6)  # inputs, built now: graded references are tripwired while grading
CHAR_VOCAB = ref_build_char_vocab(TEXTS)
ODD_VOCAB = {"hello": 0, "world": 1, UNK: 7}  # the <unk> id comes from the vocab, not a hard-coded 0


# ---------------------------------------------------------------------------------------------- checks


@exercise("01.1", title="word vocabulary with <unk>",
          hint='vocab = {"<unk>": 0} + the max_size-1 most frequent words, sorted by (-count, word); '
               'encode_words maps each text.split() word to vocab.get(word, vocab["<unk>"])',
          reference=["labsupport.checks.lab01:ref_build_word_vocab", "labsupport.checks.lab01:ref_encode_words"])
def drive_word_vocab(t: Trace, build_word_vocab: Callable, encode_words: Callable) -> None:
    for texts, size in [(TEXTS, 6), (TEXTS, 1), (TEXTS, 100), ([], 5), (["b a", "a b", "c"], 3)]:
        t.record(f"build_word_vocab({short(texts, 60)}, max_size={size})",
                 build_word_vocab(copy.deepcopy(texts), size))
    for text in ["the cat sat", "the zebra sat on a mat", "", "  the\n\tdog  ", "The cat"]:
        t.record(f"encode_words({text!r}, vocab)", encode_words(text, dict(WORD_VOCAB)))
    t.record(f"encode_words('hello there world', {ODD_VOCAB})", encode_words("hello there world", dict(ODD_VOCAB)))


@exercise("01.2", title="character vocabulary",
          hint='vocab = {"<unk>": 0} + sorted(set of all characters) with ids 1, 2, ...; '
               'encode_chars gives one id per character, unknown ones -> vocab["<unk>"]',
          reference=["labsupport.checks.lab01:ref_build_char_vocab", "labsupport.checks.lab01:ref_encode_chars"])
def drive_char_vocab(t: Trace, build_char_vocab: Callable, encode_chars: Callable) -> None:
    for texts in [TEXTS, ["héllo wörld 🤗", "line one\nline two\t!"], [], [""]]:
        t.record(f"build_char_vocab({short(texts, 60)})", build_char_vocab(list(texts)))
    for text in ["the cat", "", "THE CAT!", "a  b\n", "🤗"]:
        t.record(f"encode_chars({text!r}, vocab)", encode_chars(text, dict(CHAR_VOCAB)))


@exercise("01.3", title="count adjacent pairs",
          hint="for each word and count n: for each pair in zip(word, word[1:]): counts[pair] += n",
          reference=["labsupport.bpe_train:count_pairs"])
def drive_count_pairs(t: Trace, count_pairs: Callable) -> None:
    for words in PAIR_CASES:
        inp = dict(words)
        t.record(f"count_pairs({short(words, 80)})", count_pairs(inp))
        t.record(f"the input of count_pairs({short(words, 80)}) afterwards (must be unchanged)", inp)


@exercise("01.4", title="merge one pair",
          hint="scan each word left to right; where (word[i], word[i+1]) == pair append word[i] + word[i+1] and "
               "skip 2, else append word[i]; return a new dict",
          reference=["labsupport.bpe_train:merge_pair"])
def drive_merge_pair(t: Trace, merge_pair: Callable) -> None:
    for words, pair in MERGE_CASES:
        inp = copy.deepcopy(words)
        t.record(f"merge_pair({short(words, 80)}, {pair})", merge_pair(inp, pair))
        t.record(f"the input of merge_pair({short(words, 60)}, {pair}) afterwards (return a new dict, leave the "
                 "input unchanged)", inp)


@exercise("01.5", title="learn BPE merges",
          hint="repeat num_merges times: pairs = count_pairs(words); stop if empty; best = the highest count, "
               "ties -> min(pair); words = merge_pair(words, best)",
          reference=["labsupport.bpe_train:learn_merges"])
def drive_learn_merges(t: Trace, learn_merges: Callable) -> None:
    for words, n in LEARN_CASES:
        got = learn_merges(copy.deepcopy(words), n)
        if type(got) is list:  # a merge may be a list or a tuple
            got = [tuple(p) if type(p) is list else p for p in got]
        t.record(f"learn_merges({short(words, 60)}, num_merges={n})", got)
