"""The sandbox's building blocks without running a class: the read-only view, the environment allowlist,
refusing to grade unsandboxed, and honest isolation lines."""

from pathlib import Path
from types import SimpleNamespace

import pytest

import grading
from grading import sandbox
from grading.parse import REFERENCE_MESSAGE, reference_use

PKG = Path(grading.__file__).resolve().parent


def test_view_holds_python_and_the_packages_but_not_the_repository():
    view = sandbox.view_paths([])
    assert str(PKG) in view["ro"] and str(PKG.parent) not in view["ro"]
    assert not any(p.endswith("/.git") or p.endswith("/notebooks") for p in view["ro"])


def test_secrets_inside_the_view_are_masked_and_a_secret_holding_python_is_refused(tmp_path):
    overlay = PKG / "hidden"  # the README's "checkout at grading/hidden/"
    assert str(overlay) in sandbox.view_paths([overlay])["masks"]
    with pytest.raises(SystemExit, match="cannot build the sandbox's view"):
        sandbox.view_paths([PKG.parent.parent if PKG.parent.parent != Path("/") else PKG])


def test_environment_is_an_allowlist(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("LABGRADE_HIDDEN", "/private/overlay")
    env = sandbox.grading_env("smoke")
    assert "AWS_SECRET_ACCESS_KEY" not in env and "LABGRADE_HIDDEN" not in env
    assert set(env) <= set(sandbox.ALLOWED_ENV) | set(sandbox.THREAD_VARS) | {
        "CUDA_VISIBLE_DEVICES", "LABSUPPORT_PROFILE", "MPLBACKEND", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
        "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
        "TQDM_DISABLE", "PYTHONPATH", "LABSUPPORT_CACHE"}


def test_auto_refuses_to_grade_without_a_sandbox(monkeypatch):
    monkeypatch.delenv("LABGRADE_ISOLATION", raising=False)
    monkeypatch.setattr(sandbox, "namespaces_available", lambda: "no user namespaces here")
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="cannot sandbox graded code"):
        sandbox.choose_mode("auto")
    assert sandbox.choose_mode("container")[0] == "none" and sandbox.choose_mode("none")[0] == "none"


def test_an_explicit_mode_is_the_mode_used(monkeypatch):
    monkeypatch.delenv("LABGRADE_ISOLATION", raising=False)
    monkeypatch.setattr(sandbox, "namespaces_available", lambda: None)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: "/usr/bin/bwrap")
    assert sandbox.choose_mode("namespaces")[0] == "namespaces"  # used to fall through to "none"
    assert sandbox.choose_mode("bwrap")[0] == "bwrap" and sandbox.choose_mode("auto")[0] == "namespaces"


def test_isolation_lines_state_the_numbers_that_apply(monkeypatch):
    limits = SimpleNamespace(processes=32, memory_mb=256)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    iso = sandbox.describe("namespaces", "", limits, [])
    assert "at most 32" in iso.processes and "RLIMIT_NPROC" in iso.processes
    assert "NOT per submission" in iso.memory and "32 x 256 MB" in iso.memory
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    assert sandbox.describe("none", "x", limits, []).processes.startswith("NOT limited")
    assert "memory cgroup" in sandbox.describe("namespaces", "", limits, ["memory", "pids"]).memory


@pytest.mark.parametrize("code,flagged", [
    ("from labsupport.bpe_train import learn_merges", "labsupport.bpe_train.learn_merges"),
    ("import labsupport.bpe_train as b\nx = b.learn_merges", "labsupport.bpe_train.learn_merges"),
    ("from labsupport import bpe_train\ndef f(w, n):\n    return bpe_train.learn_merges(w, n)",
     "labsupport.bpe_train.learn_merges"),
    ("from labsupport.checks.lab01 import ref_build_word_vocab", "labsupport.checks.lab01"),
    ("import labsupport\ny = labsupport.checks", "labsupport.checks"),
    ("from labsupport.bpe_train import word_counts", None),  # not a graded reference
    ("def learn_merges(words, n):\n    return []", None),
])
def test_static_reference_scan(code, flagged):
    got = reference_use("import labsupport", [code], ["labsupport.bpe_train:learn_merges"], [])
    assert (got is None) if flagged is None else (got.startswith(REFERENCE_MESSAGE) and flagged in got)


def test_spec_allow_list_permits_a_listed_reference():
    code = "from labsupport.bpe_train import learn_merges"
    assert reference_use("", [code], ["labsupport.bpe_train:learn_merges"], ["labsupport.bpe_train:learn_merges"]) \
        is None


def test_re_exports_of_a_reference_are_found_and_flagged():
    from grading.judge import aliases

    found = aliases(["labsupport.generate:generate", "labsupport.gpt:GPT.generate"])
    assert {"labsupport.lmtrain:generate", "labsupport.lstm:generate", "labsupport.gpt:GPT.generate"} <= set(found)
    code = "from labsupport.lmtrain import generate as g\ndef generate(m, ids, n):\n    return g(m, ids, n)"
    assert "labsupport.lmtrain.generate" in reference_use("", [code], found, [])
    assert reference_use("", [code], aliases(["labsupport.generate:top_k_filter"]), []) is None
