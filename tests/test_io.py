import os

import pytest
import torch

from labsupport import io


def test_atomic_save_leaves_old_file_on_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    io.atomic_torch_save({"a": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        io.atomic_torch_save({"b": Boom()}, path)
    assert torch.load(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temp file left behind


def test_atomic_dir_keeps_first_complete_copy(tmp_path):
    target = tmp_path / "model"
    with io.atomic_dir(target) as d:
        (d / "config.json").write_text("first")
    with io.atomic_dir(target) as d:  # a racing second builder loses quietly
        (d / "config.json").write_text("second")
    assert (target / "config.json").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["model"]
    with pytest.raises(ValueError), io.atomic_dir(tmp_path / "broken") as d:
        (d / "half").write_text("x")
        raise ValueError
    assert not (tmp_path / "broken").exists() and sorted(os.listdir(tmp_path)) == ["model"]


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_CACHE", str(tmp_path / "c"))
    assert io.cache_dir("smoke", "x") == tmp_path / "c" / "smoke" / "x"
    assert (tmp_path / "c" / "smoke" / "x").is_dir()
