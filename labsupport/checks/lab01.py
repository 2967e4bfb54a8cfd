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
          hint="a vocabulary keeps the most frequent words (ties broken alphabetically) after the unknown-word "
               "token at id 0; encoding looks each whitespace-separated word up and falls back to that id",
          hint2="collections.Counter and its counts, sorted() with a key of (-count, word), dict.get(word, "
                "default)",
          reference=["labsupport.checks.lab01:ref_build_word_vocab", "labsupport.checks.lab01:ref_encode_words"],
          success="vocabularies and <unk> ids match the reference")
def drive_word_vocab(t: Trace, build_word_vocab: Callable, encode_words: Callable) -> None:
    for texts, size in [(TEXTS, 6), (TEXTS, 1), (TEXTS, 100), ([], 5), (["b a", "a b", "c"], 3)]:
        t.record(f"build_word_vocab({short(texts, 60)}, max_size={size})",
                 build_word_vocab(copy.deepcopy(texts), size))
    for text in ["the cat sat", "the zebra sat on a mat", "", "  the\n\tdog  ", "The cat"]:
        t.record(f"encode_words({text!r}, vocab)", encode_words(text, dict(WORD_VOCAB)))
    t.record(f"encode_words('hello there world', {ODD_VOCAB})", encode_words("hello there world", dict(ODD_VOCAB)))


@exercise("01.2", title="character vocabulary",
          hint="one id per distinct character, in sorted order, after the unknown token at id 0; encoding gives "
               "one id per character",
          hint2="set() of the characters of all texts joined together, sorted(), enumerate(..., start=1), "
                "dict.get",
          reference=["labsupport.checks.lab01:ref_build_char_vocab", "labsupport.checks.lab01:ref_encode_chars"],
          success="character vocabularies and ids match the reference")
def drive_char_vocab(t: Trace, build_char_vocab: Callable, encode_chars: Callable) -> None:
    for texts in [TEXTS, ["héllo wörld 🤗", "line one\nline two\t!"], [], [""]]:
        t.record(f"build_char_vocab({short(texts, 60)})", build_char_vocab(list(texts)))
    for text in ["the cat", "", "THE CAT!", "a  b\n", "🤗"]:
        t.record(f"encode_chars({text!r}, vocab)", encode_chars(text, dict(CHAR_VOCAB)))


@exercise("01.3", title="count adjacent pairs",
          hint="every word contributes each pair of neighbouring symbols, weighted by how often the word occurs",
          hint2="zip over a word and the same word shifted by one; a collections.Counter (or dict) to add up the "
                "counts",
          reference=["labsupport.bpe_train:count_pairs"],
          success=f"{len(PAIR_CASES)} word-count dicts counted correctly")
def drive_count_pairs(t: Trace, count_pairs: Callable) -> None:
    for words in PAIR_CASES:
        inp = dict(words)
        t.record(f"count_pairs({short(words, 80)})", count_pairs(inp))
        t.record(f"the input of count_pairs({short(words, 80)}) afterwards (must be unchanged)", inp)


@exercise("01.4", title="merge one pair",
          hint="walk through each word from the left: where the pair starts, emit the two symbols joined and "
               "jump past both, otherwise emit the symbol and move on; build new words, never change the input",
          hint2="a while loop with an index over the tuple, string concatenation, tuple(...) of the new symbols",
          reference=["labsupport.bpe_train:merge_pair"],
          success=f"{len(MERGE_CASES)} merges match the reference (overlaps included)")
def drive_merge_pair(t: Trace, merge_pair: Callable) -> None:
    for words, pair in MERGE_CASES:
        inp = copy.deepcopy(words)
        t.record(f"merge_pair({short(words, 80)}, {pair})", merge_pair(inp, pair))
        t.record(f"the input of merge_pair({short(words, 60)}, {pair}) afterwards (return a new dict, leave the "
                 "input unchanged)", inp)


@exercise("01.5", title="learn BPE merges",
          hint="greedy training: count the pairs, stop when there are none, merge the most frequent one (on a "
               "tie, the smallest pair), remember it, repeat",
          hint2="your count_pairs and merge_pair; max over the counts, then min over the pairs that reach it",
          reference=["labsupport.bpe_train:learn_merges"],
          success="merges match the reference, tie-break and early stop included")
def drive_learn_merges(t: Trace, learn_merges: Callable) -> None:
    for words, n in LEARN_CASES:
        got = learn_merges(copy.deepcopy(words), n)
        if type(got) is list:  # a merge may be a list or a tuple
            got = [tuple(p) if type(p) is list else p for p in got]
        t.record(f"learn_merges({short(words, 60)}, num_merges={n})", got)
