"""Break one thing at a time; a lab must fail fast, with a message that says what is wrong."""

import pytest

from labsupport import rehearse

from .conftest import run_client


@pytest.fixture
def broken_env(broken_hub, tmp_path):
    return {**rehearse.client_env(broken_hub.endpoint, tmp_path / "hf-home"), "LABSUPPORT_PROFILE": "full"}


def expect(env, what, contains, within):
    proc = run_client("expect_failure", env, what=what, contains=contains, within=within)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def run_broken_lab(lab: str, env, tmp_path):
    from labsupport.runner import REPO, find_labs, run_lab

    result = run_lab(find_labs(REPO / "notebooks", [lab])[0], None, 300, tmp_path, "tiny",
                     **{**env, "LABSUPPORT_PROFILE": None})  # detection chooses full: the broken hub answers
    print(f"{result.status} after {result.seconds:.1f}s at {result.error}")
    assert result.status == "FAILED"
    return result


def test_renamed_column_fails_lab05_at_load(broken_env, tmp_path):
    result = run_broken_lab("05", broken_env, tmp_path)
    assert "'poem_sentiment' (google-research-datasets/poem_sentiment on the hub) split 'train' lacks column(s) " \
           "['verse_text']" in result.error, result.error
    assert "streaming.load_stream" in result.error  # the first cell that touches the data, not a later KeyError


def test_missing_split_fails_lab07_at_load(broken_env, tmp_path):
    result = run_broken_lab("07", broken_env, tmp_path)
    assert "'sst2' (stanfordnlp/sst2 on the hub) has no split 'validation'" in result.error, result.error


def test_unreachable_server_with_full_forced(tmp_path):
    env = {**rehearse.client_env(f"http://127.0.0.1:{rehearse.free_port()}", tmp_path), "LABSUPPORT_PROFILE": "full"}
    out = expect(env, "tokenizer:gpt2:", f"{env['HF_ENDPOINT']} unreachable", 10)
    assert "LABSUPPORT_PROFILE=offline" in out
    out = expect(env, "dataset:imdb:train", f"{env['HF_ENDPOINT']} unreachable", 10)


def test_unreachable_server_detected(tmp_path):
    """With no profile chosen, a dead endpoint makes setup() leave full quickly and say why."""
    env = rehearse.client_env(f"http://127.0.0.1:{rehearse.free_port()}", tmp_path)
    proc = run_client("detection", env, expect="offline")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"{env['HF_ENDPOINT']} unreachable" in proc.stdout
