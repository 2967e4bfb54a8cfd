"""Checks that run inside a client process whose only hub is the rehearsal server (see conftest.run_client).
Each raises (non-zero exit) on failure and prints what it saw."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import torch

from labsupport import assets

SAMPLES = ["Hello, my dog is a little", "I will go for a run and will jump into a lake.", " ünïcödé  spaces\n"]


def models_by_hub_id() -> None:
    """Tokenizers and models come from the hub ids, with the real tokenizer files."""
    from labsupport.bpe import hf_gpt2_tokenizer
    from labsupport.gpt import GPT

    vendored = hf_gpt2_tokenizer()
    for name in ("gpt2", "causal-lm", "gpt-neo-125M"):
        tok = assets.load_tokenizer(name, profile="full")
        assert [tok(s)["input_ids"] for s in SAMPLES] == [vendored(s)["input_ids"] for s in SAMPLES], name
        assert tok.eos_token == "<|endoftext|>", (name, tok.eos_token)
    bert_tok = assets.load_tokenizer("bert-base-uncased", profile="full")
    minilm = assets.load_tokenizer("bert-base-uncased", profile="offline")  # bert-base-uncased vocabulary
    assert [bert_tok(s)["input_ids"] for s in SAMPLES] == [minilm(s)["input_ids"] for s in SAMPLES]
    bert = assets.load_model("bert-base-uncased", profile="full", attn_implementation="eager")
    assert type(bert).__name__ == "BertModel" and bert.config.vocab_size == 30522
    neo = assets.load_causal_lm("gpt-neo-125M", profile="full")
    assert type(neo).__name__ == "GPTNeoForCausalLM"

    # Lab 04's import: assets.load_model("gpt2", GPT) goes through GPT.from_pretrained on the hub id
    ours = assets.load_model("gpt2", GPT).eval()
    hf = assets.load_causal_lm("gpt2", profile="full").eval()
    ids = torch.tensor([vendored(SAMPLES[0])["input_ids"]])
    with torch.no_grad():
        diff = (ours(ids)[0] - hf(ids).logits).abs().max().item()
    assert diff < 1e-4, diff
    hub_cache = Path(os.environ["HF_HOME"]) / "hub"
    cached = sorted(p.name for p in hub_cache.glob("models--*"))
    assert cached == ["models--EleutherAI--gpt-neo-125m", "models--google-bert--bert-base-uncased",
                      "models--openai-community--gpt2"], cached
    print("models ok; assets.load_model(\"gpt2\", GPT) vs HF logits max diff", diff)


def datasets_in_real_schema() -> None:
    """Every split of every dataset asset loads from the hub id (and streams) in the fixtures' schema."""
    for name, asset in assets.REGISTRY.items():
        if asset.kind != "dataset":
            continue
        make = asset.smoke.build
        splits = {"imdb": ("train", "test", "unsupervised")}.get(name, ("train", "validation", "test"))
        for split in splits:
            ds = assets.load_dataset(name, split, profile="full")
            ref = make(split)
            assert ds.column_names == ref.column_names, (name, split, ds.column_names)
            for col, feature in ref.features.items():
                names = getattr(feature, "names", None)
                if names is not None:
                    assert ds.features[col].names == names, (name, split, col)
            assert ds[:5] == ref[:5], (name, split)
            first = next(iter(assets.load_dataset(name, split, streaming=True, profile="full")))
            assert first == ref[0], (name, split, first)
    print("datasets ok")


def stream_workers() -> None:
    """Lab 05: blocks streamed from the hub's parquet with 0 and 2 DataLoader workers are the same multiset."""
    from labsupport import streaming

    tokenizer = streaming.build_tokenizer(profile="full")
    stream = streaming.load_stream("train", profile="full").take(120)
    dataset = streaming.StreamingLMIterableDataset(stream, tokenizer, 32, 24, docs_per_shard=16)

    def blocks(num_workers: int) -> Counter:
        loader = streaming.make_dataloader(dataset, batch_size=8, num_workers=num_workers)
        return Counter(tuple(ids) for b in loader for ids in b["input_ids"].tolist())

    single, two = blocks(0), blocks(2)
    assert sum(single.values()) > 20 and single == two, (sum(single.values()), sum(two.values()))
    print(f"{sum(single.values())} blocks, same multiset with 2 workers")


def expect_failure(what: str, contains: str, within: float, profile: str | None = None) -> None:
    """`what` must raise within `within` seconds with a message containing `contains`."""
    from labsupport import runtime

    start = time.perf_counter()
    try:
        if what == "setup":
            cfg = runtime.setup("99_rehearsal", profile=profile)
            raise AssertionError(f"setup chose {cfg.profile}")
        kind, name, split = what.split(":")
        if kind == "dataset":
            ds = assets.load_dataset(name, split, profile=profile)
            print(ds)
        else:
            assets.load_tokenizer(name, profile=profile)
    except AssertionError:
        raise
    except Exception as err:  # noqa: BLE001 -- the point is the message, whatever the type
        seconds = time.perf_counter() - start
        message = f"{type(err).__name__}: {err}"
        print(f"failed after {seconds:.1f}s with {message}")
        assert contains in message, message
        assert seconds < within, seconds
        return
    raise AssertionError(f"{what} did not fail")


def detection(expect: str) -> None:
    """labsupport.setup() (what every notebook calls) with no profile given chooses `expect` by itself."""
    import labsupport

    cfg = labsupport.setup("99_rehearsal")
    assert cfg.profile == expect, (cfg.profile, cfg.why)
