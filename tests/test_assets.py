import dataclasses
import warnings
from pathlib import Path

import datasets
import pytest
import torch

from labsupport import assets, fixtures, offline


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_CACHE", str(tmp_path))
    return tmp_path


def test_unknown_asset_lists_known_names():
    with pytest.raises(KeyError, match="gpt2.*imdb"):
        assets.load_causal_lm("gpt-5")


def test_kind_mismatch_is_explained():
    with pytest.raises(KeyError, match="is a dataset, not a model"):
        assets.model_source("imdb")
    with pytest.raises(KeyError, match="is a model, not a dataset"):
        assets.load_dataset("gpt2")


def test_registry_has_a_source_for_every_profile():
    for asset in assets.REGISTRY.values():
        assert asset.full and asset.smoke.what and asset.labs, asset.name
        assert asset.offline is None or isinstance(asset.offline, (str, assets.Offline)), asset.name
        if asset.kind != "tokenizer":  # the tokenizer is vendored; every model and dataset has a smoke builder
            assert callable(asset.smoke.build), asset.name


def test_readme_tables_are_generated_from_the_declarations():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assets_table, packages_table = assets.readme_tables()
    assert assets_table in readme, "README's asset table is stale: paste assets.readme_tables()[0] into it"
    assert packages_table in readme, "README's offline package table is stale: paste assets.readme_tables()[1]"
    assert all(f"`{name}`" in assets_table for name in assets.REGISTRY)
    assert all(p.requirement in packages_table and p.sha256 in packages_table for p in assets.PACKAGES)


def test_a_declared_revision_reaches_from_pretrained(monkeypatch):
    from labsupport import detect

    monkeypatch.setattr(detect, "probe_hub", lambda: (True, "answered"))
    monkeypatch.setattr(assets, "_hub_answered", set())
    monkeypatch.setitem(assets.REGISTRY, "gpt2", dataclasses.replace(assets.REGISTRY["gpt2"], revision="abc123"))
    seen = {}

    class Recorder:
        @classmethod
        def from_pretrained(cls, source, **kwargs):
            seen[source] = kwargs
            return cls()

    assets.load_model("gpt2", Recorder, profile="full")
    assets.load_model("gpt2", Recorder, profile="smoke")  # a local directory has no revisions
    assert seen["openai-community/gpt2"] == {"revision": "abc123"}
    assert [kw for src, kw in seen.items() if src != "openai-community/gpt2"] == [{}]


def test_the_lab_gpt_loads_by_asset_name(private_cache):
    from labsupport.gpt import GPT

    m = assets.load_model("gpt2", GPT, profile="smoke")  # the tiny random GPT-2, through GPT.from_pretrained
    assert isinstance(m, GPT) and m.config.vocab_size == 50257 and m.config.n_embd == 32
    assert m.lm_head.weight is m.transformer.wte.weight


def test_full_profile_points_at_hub_ids(monkeypatch):
    from labsupport import detect

    monkeypatch.setattr(detect, "probe_hub", lambda: (True, "answered"))  # no hub here; the ids are the point
    monkeypatch.setattr(assets, "_hub_answered", set())
    assert assets.model_source("gpt2", "full") == "openai-community/gpt2"
    assert assets.model_source("gpt-neo-125M", "full") == "EleutherAI/gpt-neo-125m"


def test_full_ids_are_canonical_and_rehearsed():
    """Every hub id the labs use is served by the rehearsal mirror (under that exact, canonical id)."""
    from labsupport.rehearse import mirror

    for asset in assets.REGISTRY.values():
        repo, _, config = asset.full.partition("::")
        if asset.kind == "dataset":
            assert repo in mirror.DATASETS, asset.name
            assert (config or None) == mirror.DATASETS[repo][0] or not config, asset.name
        else:
            assert repo in mirror.MODEL_BUILDERS, asset.name
        assert "/" in repo, f"{asset.name}: {repo!r} is a legacy id without its organisation"


def test_smoke_models_are_seeded_and_built_through_from_pretrained(private_cache, tmp_path, monkeypatch):
    from transformers import GPT2LMHeadModel

    m1 = assets.load_causal_lm("gpt2", profile="smoke")
    assert isinstance(m1, GPT2LMHeadModel)
    assert (private_cache / "smoke" / assets.SMOKE_VERSION / "gpt2" / "config.json").exists()
    monkeypatch.setenv("LABSUPPORT_CACHE", str(tmp_path / "other"))  # a fresh build elsewhere ...
    m2 = assets.load_causal_lm("gpt2", profile="smoke")
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n  # ... gives the same weights


def test_smoke_build_does_not_disturb_global_rng(private_cache):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assets.load_causal_lm("gpt-neo-125M", profile="smoke")
    assert torch.equal(torch.rand(3), expected)


def test_smoke_tokenizer_is_real_gpt2_bpe():
    tok = assets.load_tokenizer("gpt2", profile="smoke")
    assert len(tok) == 50257 and tok.eos_token == "<|endoftext|>"
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids


def test_smoke_bert_returns_attentions(private_cache):
    tok = assets.load_tokenizer("bert-base-uncased", profile="smoke")
    model = assets.load_model("bert-base-uncased", profile="smoke", attn_implementation="eager")
    enc = tok("I will go for a run and will jump into a lake.", return_tensors="pt")
    assert tok.unk_token_id not in enc["input_ids"][0].tolist()  # its vocab covers the lab's sentence
    out = model(**enc, output_attentions=True)
    T = enc["input_ids"].shape[1]
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, T, T)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(1, 4, T), atol=1e-5)


@pytest.mark.parametrize(
    "name,split,columns",
    [
        ("poem_sentiment", "validation", ["id", "verse_text", "label"]),
        ("imdb", "test", ["text", "label"]),
        ("sst2", "validation", ["idx", "sentence", "label"]),
        ("wikitext-2", "train", ["text"]),
    ],
)
def test_smoke_datasets_have_real_schema(name, split, columns):
    ds = assets.load_dataset(name, split, profile="smoke")
    assert isinstance(ds, datasets.Dataset) and ds.column_names == columns and len(ds) > 0
    stream = assets.load_dataset(name, split, streaming=True, profile="smoke")
    assert isinstance(stream, datasets.IterableDataset)
    assert next(iter(stream)) == ds[0]


def test_label_names_match_the_hub_datasets():
    assert fixtures.smoke_sst2("train").features["label"].names == ["negative", "positive"]
    assert fixtures.smoke_imdb("train").features["label"].names == ["neg", "pos"]
    names = fixtures.smoke_poem_sentiment("train").features["label"].names
    assert names == ["negative", "positive", "no_impact", "mixed"]


def test_fixtures_are_deterministic_and_splits_differ():
    a, b = fixtures.smoke_sst2("train"), fixtures.smoke_sst2("train")
    assert a["sentence"] == b["sentence"]
    assert a["sentence"][:20] != fixtures.smoke_sst2("validation")["sentence"][:20]


def test_sentiment_fixture_is_learnable():
    # every labelled sentence carries a word from its class's list: a lexicon rule gets them all right
    ds = fixtures.smoke_sst2("validation")
    pos = set(fixtures.POSITIVE)
    pred = [int(any(w in pos for w in s.split())) for s in ds["sentence"]]
    assert pred == ds["label"]
    assert 0.3 < sum(ds["label"]) / len(ds) < 0.7


def test_unknown_split_is_explained():
    with pytest.raises(ValueError, match="splits: train, validation, test"):
        assets.load_dataset("sst2", "dev", profile="smoke")


def test_offline_without_source_falls_back_to_smoke_loudly(monkeypatch):
    absent = assets.Offline(offline.Package("no-such-pkg", "1.0", "no_such_pkg_xyz", "x", "", "MIT"), offline.imdb, "")
    asset = dataclasses.replace(assets.REGISTRY["imdb"], offline=absent)
    monkeypatch.setitem(assets.REGISTRY, "imdb", asset)
    with pytest.warns(UserWarning, match="no-such-pkg==1.0.*not installed"):
        assert assets.source_profile("imdb", "offline") == "smoke"


def test_a_dataset_without_the_columns_the_labs_read_fails_at_load():
    import datasets

    renamed = datasets.Dataset.from_dict({"id": [0], "text": ["the sea"], "label": [1]})
    with pytest.raises(ValueError, match=r"'poem_sentiment' \(x on the hub\) split 'train' lacks column\(s\) "
                                         r"\['verse_text'\]; it has \['id', 'text', 'label'\].*LABSUPPORT_PROFILE"):
        assets.check_columns(renamed, assets.get_asset("poem_sentiment"), "train", "x on the hub")
    extra = renamed.add_column("verse_text", ["the sea"])  # an added column is harmless
    assert assets.check_columns(extra, assets.get_asset("poem_sentiment"), "train", "smoke") is extra
    for name in ("poem_sentiment", "imdb", "sst2", "wikitext-2"):  # the smoke fixtures pass their own check
        assets.load_dataset(name, "train", profile="smoke")
        assets.load_dataset(name, "train", streaming=True, profile="smoke")


def test_full_fails_fast_when_the_hub_does_not_answer(monkeypatch):
    from labsupport import detect

    monkeypatch.setattr(detect, "probe_hub", lambda: (False, "http://127.0.0.1:9 unreachable (ConnectError)"))
    monkeypatch.setattr(assets, "_hub_answered", set())
    for load in (lambda: assets.load_tokenizer("gpt2", profile="full"),
                 lambda: assets.load_model("bert-base-uncased", profile="full"),
                 lambda: assets.load_dataset("imdb", "train", profile="full")):
        with pytest.raises(ConnectionError, match=r"needs the Hugging Face hub in the full profile, but "
                                                  r"http://127.0.0.1:9 unreachable.*LABSUPPORT_PROFILE=offline"):
            load()


def test_a_bare_model_from_a_checkpoint_with_heads_loads_quietly(tmp_path, monkeypatch, capfd):
    from transformers import BertConfig, BertForPreTraining

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForPreTraining(cfg).save_pretrained(tmp_path)  # like the hub's bert-base-uncased: heads included
    monkeypatch.setattr(assets, "model_source", lambda name, profile=None: str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = assets.load_model("bert-base-uncased")
    assert type(model).__name__ == "BertModel"
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "not sharded" not in err, err
    from transformers import BertModel

    BertModel(cfg).save_pretrained(tmp_path / "bare")  # now the pooler is all there is; drop it to test MISSING
    import safetensors.torch as st

    weights = st.load_file(tmp_path / "bare" / "model.safetensors")
    st.save_file({k: v for k, v in weights.items() if "pooler" not in k}, tmp_path / "bare" / "model.safetensors")
    monkeypatch.setattr(assets, "model_source", lambda name, profile=None: str(tmp_path / "bare"))
    with pytest.warns(UserWarning, match="weights missing from the checkpoint.*pooler"):
        assets.load_model("bert-base-uncased")
