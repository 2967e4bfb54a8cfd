"""Hub-shaped git repositories for the `full` rehearsal: the real ids, paths, configs, splits, columns and
label names, with tiny random weights and generated rows. Built from what ships with labsupport (vendored
GPT-2 BPE files, the smoke fixtures) and the offline MiniLM package (the bert-base-uncased vocabulary);
nothing is downloaded.

Layout: ``ROOT/{models,datasets}/ORG/NAME`` is a git repository (branch ``main``), which is what olah's
local-mirror mode serves. SOURCES.md beside this file lists, for every path, column, split and label name,
the public card or source it was taken from: the rehearsal is only as good as that fidelity.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from labsupport import assets, offline
from labsupport.bpe import hf_gpt2_tokenizer
from labsupport.io import atomic_dir, cache_dir

MIRROR_VERSION = "v3"  # bump when the content below changes, so cached mirrors are rebuilt

# hub id -> (config name or None, {split: path in repo})
DATASETS: dict[str, tuple[str | None, dict[str, str]]] = {
    "google-research-datasets/poem_sentiment": (None, {s: f"data/{s}-00000-of-00001.parquet"
                                                       for s in ("train", "validation", "test")}),
    "stanfordnlp/imdb": ("plain_text", {s: f"plain_text/{s}-00000-of-00001.parquet"
                                        for s in ("train", "test", "unsupervised")}),
    "stanfordnlp/sst2": (None, {s: f"data/{s}-00000-of-00001.parquet" for s in ("train", "validation", "test")}),
    "Salesforce/wikitext": ("wikitext-2-raw-v1", {s: f"wikitext-2-raw-v1/{s}-00000-of-00001.parquet"
                                                  for s in ("train", "validation", "test")}),
}
ASSET_OF = {a.full.partition("::")[0]: a for a in assets.REGISTRY.values() if a.kind == "dataset"}  # hub id ->
# the dataset asset, whose smoke builder generates rows in its schema
MODELS = ("openai-community/gpt2", "EleutherAI/gpt-neo-125m", "google-bert/bert-base-uncased")
GIT_ENV = {"GIT_AUTHOR_NAME": "labsupport", "GIT_AUTHOR_EMAIL": "rehearse@localhost",
           "GIT_COMMITTER_NAME": "labsupport", "GIT_COMMITTER_EMAIL": "rehearse@localhost",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def commit_all(repo: Path, message: str) -> None:
    """Commit everything in `repo` (initialising it on branch main the first time)."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


# ---------------------------------------------------------------------------------------------- models


def _gpt2_bpe_files(out: Path, *, tokenizer_json: bool) -> None:
    data = Path(__file__).resolve().parent.parent / "data" / "gpt2"
    shutil.copyfile(data / "encoder.json", out / "vocab.json")
    shutil.copyfile(data / "vocab.bpe", out / "merges.txt")
    if tokenizer_json:
        hf_gpt2_tokenizer().backend_tokenizer.save(str(out / "tokenizer.json"))


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _gpt2(out: Path) -> None:
    from transformers import GenerationConfig, GPT2Config, GPT2Model  # heavy (~3 s): only building the mirror needs it

    # Like the real checkpoint: the bare transformer's weights (wte, h.0..., no "transformer." prefix, no lm_head:
    # it is tied to wte) under a config whose architectures say GPT2LMHeadModel.
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=32, n_layer=2, n_head=2,
                     architectures=["GPT2LMHeadModel"])
    GPT2Model(cfg).save_pretrained(out)
    GenerationConfig(bos_token_id=50256, eos_token_id=50256).save_pretrained(out)
    _gpt2_bpe_files(out, tokenizer_json=True)
    _write_json(out / "tokenizer_config.json", {"model_max_length": 1024})


def _gpt_neo(out: Path) -> None:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM  # heavy: see above

    cfg = GPTNeoConfig(vocab_size=50257, max_position_embeddings=2048, hidden_size=32, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], window_size=256)
    GPTNeoForCausalLM(cfg).save_pretrained(out)
    _gpt2_bpe_files(out, tokenizer_json=False)
    eot = "<|endoftext|>"
    _write_json(out / "special_tokens_map.json", {"bos_token": eot, "eos_token": eot, "unk_token": eot})
    _write_json(out / "tokenizer_config.json", {"errors": "replace", "bos_token": eot, "eos_token": eot,
                                                "unk_token": eot, "add_prefix_space": False,
                                                "model_max_length": 2048})


def _bert(out: Path) -> None:
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast  # heavy: see above

    shutil.copyfile(offline.package_dir(assets.MINILM) / "model" / "vocab.txt", out / "vocab.txt")
    tok = BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True)  # transformers 5: vocab=, not vocab_file=
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", {"do_lower_case": True, "model_max_length": 512})
    # Like the real checkpoint (converted from Google's pre-training run): encoder, pooler and both pre-training
    # heads (cls.predictions, cls.seq_relationship), under a config whose architectures say BertForMaskedLM.
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=512, architectures=["BertForMaskedLM"])
    BertForPreTraining(cfg).save_pretrained(out)


MODEL_BUILDERS: dict[str, Callable[[Path], None]] = {
    "openai-community/gpt2": _gpt2,
    "EleutherAI/gpt-neo-125m": _gpt_neo,
    "google-bert/bert-base-uncased": _bert,
}


# ---------------------------------------------------------------------------------------------- datasets


def dataset_card(repo_id: str, splits: dict[str, object], config: str | None) -> str:
    """README.md with the card YAML the hub shows: dataset_info (features, splits) and configs (data_files)."""
    _, paths = DATASETS[repo_id]
    features = next(iter(splits.values())).features
    info = {"features": features._to_yaml_list(),
            "splits": [{"name": s, "num_bytes": ds.data.nbytes, "num_examples": len(ds)} for s, ds in splits.items()]}
    data_files = [{"split": s, "path": paths[s]} for s in splits]
    if config:
        info = {"config_name": config, **info}
    meta = {"dataset_info": info, "configs": [{"config_name": config or "default", "data_files": data_files}]}
    body = yaml.safe_dump(meta, sort_keys=False)
    return (f"---\n{body}---\n\n# {repo_id} (rehearsal copy)\n\n"
            "Generated rows in the real schema; see labsupport/rehearse/SOURCES.md.\n")


def dataset_splits(repo_id: str) -> dict[str, object]:
    """The repo's splits as `datasets.Dataset`s with the card's features (one ClassLabel for all splits)."""
    make = ASSET_OF[repo_id].smoke.build
    splits = {s: make(s) for s in DATASETS[repo_id][1]}
    # the hub declares one feature set per config: the -1 ("no label") rows keep the ClassLabel type
    labelled = next((ds.features for ds in splits.values() if "label" in ds.features
                     and hasattr(ds.features["label"], "names")), None)
    if labelled is not None:
        splits = {s: ds.cast(labelled) for s, ds in splits.items()}
    return splits


def write_dataset(repo: Path, repo_id: str, splits: dict[str, object] | None = None) -> None:
    config, paths = DATASETS[repo_id]
    splits = dataset_splits(repo_id) if splits is None else splits
    for split, ds in splits.items():
        target = repo / paths[split]
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(target))
    (repo / "README.md").write_text(dataset_card(repo_id, splits, config))


# ---------------------------------------------------------------------------------------------- the mirror


def build(root: Path) -> Path:
    """Build every repository under `root` (empty or absent) and return `root`."""
    import datasets  # heavy (~2 s each): only building the mirror needs them
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    for repo_id, builder in MODEL_BUILDERS.items():
        repo = root / "models" / repo_id
        repo.mkdir(parents=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            builder(repo)
        commit_all(repo, f"{repo_id}: tiny random weights, real tokenizer files")
    for repo_id in DATASETS:
        repo = root / "datasets" / repo_id
        repo.mkdir(parents=True)
        write_dataset(repo, repo_id)
        commit_all(repo, f"{repo_id}: generated rows in the real schema")
    return root


def mirror_dir() -> Path:
    """The cached mirror (built once per MIRROR_VERSION, atomically)."""
    target = cache_dir("rehearse", MIRROR_VERSION) / "mirror"
    if not (target / "models").exists():
        with atomic_dir(target) as tmp:
            build(tmp)
    return target
