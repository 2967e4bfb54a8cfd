"""Training a byte-level BPE from scratch (Lab 01's reference solution).

The same recipe GPT-2's merges came from, at toy scale:
  1. pre-tokenize the corpus with GPT-2's regex and count each distinct word;
  2. write every word as a tuple of byte symbols (``" low"`` -> ``("Ġ", "l", "o", "w")``);
  3. count adjacent symbol pairs over all words (weighted by word frequency);
  4. merge the most frequent pair everywhere into one new symbol; record it; go to 3.

Ties (several pairs with the top count) go to the pair that sorts first as a (left, right) tuple of
Python strings, i.e. by code point; so ``("e", "s")`` beats ``("s", "t")`` and ``("l", "o")`` beats
``("Ġ", "l")`` ("Ġ" is U+0120). Any fixed rule works; this one does not depend on corpus order.

`learn_merges` is the plain loop the lab's exercises build (recount every step). `train_bpe` gives the
same merges but updates the pair counts incrementally, touching only the words that contain the merged
pair, so a few thousand merges on WikiText-2 take seconds rather than minutes.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from labsupport.bpe import apply_merges, bytes_to_unicode, pretokenize

Word = tuple[str, ...]  # a word as its current symbols, e.g. ("Ġ", "lo", "w")
Pair = tuple[str, str]


def word_counts(corpus: str | Iterable[str]) -> dict[Word, int]:
    """``{word as byte symbols: count}`` over one text or an iterable of texts (e.g. dataset rows)."""
    if isinstance(corpus, (bytes, bytearray)) or not isinstance(corpus, (str, Iterable)):
        raise TypeError(f"the corpus must be a str or an iterable of str, got {type(corpus).__name__}")
    texts = [corpus] if isinstance(corpus, str) else corpus
    byte_encoder = bytes_to_unicode()
    counts: Counter[str] = Counter()
    for pos, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"the corpus must be a str or an iterable of str, got {type(text).__name__} at "
                            f"position {pos}")
        counts.update(pretokenize(text))
    return {tuple(byte_encoder[b] for b in w.encode("utf-8")): n for w, n in counts.items()}


def count_pairs(words: dict[Word, int]) -> Counter[Pair]:
    """How often each adjacent pair occurs, each word weighted by its count (overlaps count: "aaa" has 2)."""
    pairs: Counter[Pair] = Counter()
    for word, n in words.items():
        for pair in zip(word[:-1], word[1:]):
            pairs[pair] += n
    return pairs


def merge_word(word: Word, pair: Pair) -> Word:
    """Replace each occurrence of `pair` in `word`, scanning left to right: ("a","a","a") -> ("aa","a")."""
    out: list[str] = []
    i = 0
    while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def merge_pair(words: dict[Word, int], pair: Pair) -> dict[Word, int]:
    """A new word-count dict with `pair` merged in every word (the input is not modified)."""
    merged: dict[Word, int] = defaultdict(int)
    for word, n in words.items():
        merged[merge_word(word, pair)] += n  # two spellings can become one word; add their counts
    return dict(merged)


def best_pair(pairs: dict[Pair, int]) -> Pair:
    """The most frequent pair; ties go to the pair that sorts first."""
    top = max(pairs.values())
    return min(p for p, n in pairs.items() if n == top)


def learn_merges(words: dict[Word, int], num_merges: int) -> list[Pair]:
    """The plain BPE loop: recount pairs, merge the best, `num_merges` times (fewer if no pair is left)."""
    merges: list[Pair] = []
    for _ in range(num_merges):
        pairs = count_pairs(words)
        if not pairs:  # every word is a single symbol
            break
        pair = best_pair(pairs)
        words = merge_pair(words, pair)
        merges.append(pair)
    return merges


def _learn_merges_incremental(words: dict[Word, int], num_merges: int) -> tuple[list[Pair], list[int]]:
    """Same merges as `learn_merges`, plus each merge's count; only words holding the pair are redone.

    A heap of (-count, pair) finds the best pair in O(log n) and applies the same tie-break as
    `best_pair`; entries whose count has changed since they were pushed are skipped when popped.
    """
    symbols = list(words)
    freq = list(words.values())
    pairs: Counter[Pair] = Counter()
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words that (may) contain it
    for i, word in enumerate(symbols):
        for pair in zip(word[:-1], word[1:]):
            pairs[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    merges, counts = [], []
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -neg:
            continue  # stale entry: the count changed after it was pushed
        merges.append(pair)
        counts.append(-neg)
        token = pair[0] + pair[1]
        changed: set[Pair] = set()
        for i in where.pop(pair):
            old, new = symbols[i], merge_word(symbols[i], pair)
            if new == old:
                continue  # an earlier merge already took this word's pair
            for p in zip(old[:-1], old[1:]):  # take the word's old pairs out ...
                pairs[p] -= freq[i]
                changed.add(p)
            for p in zip(new[:-1], new[1:]):  # ... and its new pairs in; only pairs with `token` are new
                pairs[p] += freq[i]
                changed.add(p)
                if token in p:
                    where[p].add(i)
            symbols[i] = new
        for p in changed:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
            else:
                del pairs[p]
    return merges, counts


@dataclass
class TrainedBPE:
    """Merges learned by `train_bpe` and the vocabulary they make: 256 byte symbols, then one per merge."""

    merges: list[Pair]
    counts: list[int]  # how often each merged pair occurred when it was chosen
    vocab: dict[str, int]  # token string -> id
    _ranks: dict[Pair, int] = field(default_factory=dict, repr=False)
    _cache: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._ranks = {pair: i for i, pair in enumerate(self.merges)}

    def tokenize(self, text: str) -> list[str]:
        """Token strings (byte symbols, spaces shown as "Ġ") of `text` under the learned merges."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize() takes a str, got {type(text).__name__}")
        byte_encoder = bytes_to_unicode()
        tokens: list[str] = []
        for word in pretokenize(text):
            if word not in self._cache:
                self._cache[word] = apply_merges("".join(byte_encoder[b] for b in word.encode("utf-8")), self._ranks)
            tokens.extend(self._cache[word])
        return tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        return [self.vocab[t] for t in self.tokenize(text)]


def train_bpe(corpus: str | Iterable[str], num_merges: int) -> TrainedBPE:
    """Learn `num_merges` byte-level BPE merges from `corpus` (a text or an iterable of texts).

    Stops early when every word is a single token. The vocabulary lists the 256 byte symbols (in byte
    order) and then each merged token in the order learned; a token that two merges both spell (e.g.
    "ab"+"c" and "a"+"bc") keeps its first id, so ``len(vocab)`` can be below ``256 + len(merges)``.
    """
    if isinstance(num_merges, bool) or not isinstance(num_merges, int):
        raise TypeError(f"num_merges must be an int, got {type(num_merges).__name__} {num_merges!r}")
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}")
    merges, counts = _learn_merges_incremental(word_counts(corpus), num_merges)
    vocab = {sym: i for i, sym in enumerate(bytes_to_unicode()[b] for b in range(256))}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return TrainedBPE(merges, counts, vocab)
