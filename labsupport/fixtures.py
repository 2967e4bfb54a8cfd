"""The `smoke` profile's sources: small generated datasets in the real datasets' schemas, and tiny random models.

Text comes from a seeded template grammar: English-looking, with sentiment words that make the
labelled sets learnable, so a smoke run can show a classifier beating chance. Each split gets its
own stable seed (crc32 of the dataset and split names, never Python's salted `hash()`). Which asset each
builder stands in for is declared in `labsupport.assets` (each `Asset`'s `Smoke` source).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from labsupport.bpe import hf_gpt2_tokenizer

if TYPE_CHECKING:
    import datasets

# `datasets` (~2-4 s to import) is imported inside the builders: assets imports this module for its declarations,
# and `import labsupport` (every lab) must stay fast.

SUBJECTS = ["the film", "this movie", "the story", "the cast", "the director", "the music", "the ending",
            "the plot", "the acting", "the script", "the camera work", "the hero", "the villain"]
POSITIVE = ["wonderful", "brilliant", "moving", "beautiful", "delightful", "superb", "charming", "great",
            "funny", "clever", "touching", "excellent"]
NEGATIVE = ["boring", "awful", "dull", "terrible", "clumsy", "tedious", "bad", "weak", "lifeless", "silly",
            "painful", "forgettable"]
NEUTRAL = ["long", "quiet", "old", "simple", "familiar", "slow", "dark", "short", "strange", "plain"]
VERBS = ["is", "was", "seems", "feels", "remains"]
ADVERBS = ["truly", "really", "quite", "rather", "simply", "often", "always"]
FILLER = ["i watched it on a rainy sunday", "my friends saw it twice", "it runs for two hours",
          "the theatre was full", "we talked about it for days", "it is based on a novel"]
NATURE = ["the sea", "the moon", "the river", "the forest", "the wind", "the night", "the morning", "the hills",
          "the stars", "the rain"]
POEM_VERBS = ["sings", "sleeps", "weeps", "shines", "whispers", "waits", "burns", "falls", "wanders"]
TOPICS = ["river", "city", "castle", "battle", "island", "railway", "cathedral", "mountain", "festival", "empire"]
FACTS = ["was built in the {c} century", "is known for its {a} history", "lies near the {b}",
         "was described as {a} by historians", "hosted a famous {d} in {y}", "has a population of {n}"]


def _rng(*parts: str) -> random.Random:
    return random.Random(zlib.crc32("/".join(parts).encode()))


def _sentence(rng: random.Random, polarity: int | None) -> str:
    """polarity 1 positive, 0 negative, None neutral."""
    words = POSITIVE if polarity == 1 else NEGATIVE if polarity == 0 else NEUTRAL
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ADVERBS)} {rng.choice(words)}"


def _review(rng: random.Random, label: int) -> str:
    parts = [_sentence(rng, label if rng.random() < 0.8 else None) for _ in range(rng.randint(3, 7))]
    parts.insert(rng.randrange(len(parts)), rng.choice(FILLER))
    sep = [". ", ". <br /><br />"]
    text = ""
    for i, part in enumerate(parts):
        text += part.capitalize() + (rng.choices(sep, [0.85, 0.15])[0] if i < len(parts) - 1 else ".")
    return text


def _verse(rng: random.Random, label: int) -> str:
    mood = {0: NEGATIVE, 1: POSITIVE, 2: NEUTRAL, 3: POSITIVE + NEGATIVE}[label]
    line = f"{rng.choice(NATURE)} {rng.choice(POEM_VERBS)} {rng.choice(['in', 'upon', 'beneath', 'beyond'])} " \
           f"{rng.choice(NATURE)}, {rng.choice(mood)} and {rng.choice(mood)}"
    return line if rng.random() < 0.5 else line.replace("the ", "thy ", 1)


def _article(rng: random.Random) -> list[str]:
    topic = rng.choice(TOPICS)
    lines = ["", f" = The {topic.title()} of {rng.choice(['Avon', 'Kell', 'Marrow', 'Stade', 'Orly'])} = ", ""]
    for _ in range(rng.randint(2, 4)):
        sents = []
        for _ in range(rng.randint(3, 6)):
            fact = rng.choice(FACTS).format(c=rng.choice(["12th", "15th", "18th", "19th"]),
                                            a=rng.choice(POSITIVE + NEUTRAL), b=rng.choice(NATURE)[4:],
                                            d=rng.choice(["battle", "festival", "race"]), y=rng.randint(1700, 1999),
                                            n=f"{rng.randint(1, 900):,}")
            sents.append(f"The {topic} {fact} .")
        lines.append(" " + " ".join(sents) + " ")
    return lines


SIZES = {"train": 400, "validation": 100, "test": 100, "unsupervised": 100}


def _labelled(name: str, split: str, make: Callable[[random.Random, int], str], n_labels: int) -> list[tuple[str, int]]:
    rng = _rng(name, split)
    return [(make(rng, lab), lab) for lab in (rng.randrange(n_labels) for _ in range(SIZES[split]))]


def _check_split(name: str, split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(valid)}")


def smoke_poem_sentiment(split: str) -> datasets.Dataset:
    import datasets  # heavy: see the top of this module

    _check_split("poem_sentiment", split, ("train", "validation", "test"))
    rows = _labelled("poem_sentiment", split, _verse, 4)
    features = datasets.Features({"id": datasets.Value("int32"), "verse_text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive", "no_impact", "mixed"])})
    return datasets.Dataset.from_dict({"id": list(range(len(rows))), "verse_text": [t for t, _ in rows],
                                       "label": [y for _, y in rows]}, features=features)


def smoke_imdb(split: str) -> datasets.Dataset:
    import datasets  # heavy: see the top of this module

    _check_split("imdb", split, ("train", "test", "unsupervised"))
    rows = _labelled("imdb", split, _review, 2)
    labels = [-1 if split == "unsupervised" else y for _, y in rows]
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    if split == "unsupervised":
        features["label"] = datasets.Value("int64")
    return datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": labels}, features=features)


def smoke_sst2(split: str) -> datasets.Dataset:
    import datasets  # heavy: see the top of this module

    _check_split("sst2", split, ("train", "validation", "test"))
    rows = _labelled("sst2", split, lambda rng, y: _sentence(rng, y) + " .", 2)
    labels = [-1 if split == "test" else y for _, y in rows]
    features = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    if split == "test":
        features["label"] = datasets.Value("int64")
    return datasets.Dataset.from_dict({"idx": list(range(len(rows))), "sentence": [t for t, _ in rows],
                                       "label": labels}, features=features)


def smoke_wikitext(split: str) -> datasets.Dataset:
    import datasets  # heavy: see the top of this module

    _check_split("wikitext-2", split, ("train", "validation", "test"))
    rng = _rng("wikitext-2", split)
    n_articles = {"train": 60, "validation": 10, "test": 10}[split]
    lines = [line for _ in range(n_articles) for line in _article(rng)]
    return datasets.Dataset.from_dict({"text": [line + "\n" if line else "" for line in lines]},
                                      features=datasets.Features({"text": datasets.Value("string")}))



# ---------------------------------------------------------------------------------------------- tiny models
# A model builder saves a tiny random checkpoint into a directory; `labsupport.assets` seeds it, builds it once into
# the cache and loads it back through the same `from_pretrained(local_dir)` path as a real checkpoint.


def smoke_gpt2(out: Path) -> None:
    """A tiny random GPT-2 (2 layers, 32 dims), with the real (vendored) GPT-2 tokenizer like the hub checkpoint."""
    from transformers import GPT2Config, GPT2LMHeadModel  # heavy (~3 s): only building a model needs it

    cfg = GPT2Config(vocab_size=50257, n_positions=256, n_embd=32, n_layer=2, n_head=2)
    GPT2LMHeadModel(cfg).save_pretrained(out)
    hf_gpt2_tokenizer().save_pretrained(out)


def smoke_gpt_neo(out: Path) -> None:
    """A tiny random GPT-Neo (2 layers, a global and a local attention layer), with the GPT-2 tokenizer."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM  # heavy: see smoke_gpt2

    cfg = GPTNeoConfig(vocab_size=50257, max_position_embeddings=256, hidden_size=32, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], window_size=64)
    GPTNeoForCausalLM(cfg).save_pretrained(out)
    hf_gpt2_tokenizer().save_pretrained(out)


SMOKE_BERT_WORDS = (
    "i will go for a run and jump into the lake . , ! ? the cat sat on mat dog is was it "
    "he she they we you of to in on at with my your this that"
).split()


def smoke_bert(out: Path) -> None:
    """A tiny random BERT with its own WordPiece vocabulary (covering Lab 02's sentences)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast  # heavy: see smoke_gpt2

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(SMOKE_BERT_WORDS), "##s", "##ing"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(out / "vocab.txt")).save_pretrained(out)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)
