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


def test_renamed_column(broken_env):
    out = expect(broken_env, "dataset:poem_sentiment:train", "verse_text", 60)
    print(out)


def test_missing_split(broken_env):
    out = expect(broken_env, "dataset:sst2:validation", "validation", 60)
    print(out)


def test_unreachable_server_with_full_forced(tmp_path):
    env = {**rehearse.client_env(f"http://127.0.0.1:{rehearse.free_port()}", tmp_path), "LABSUPPORT_PROFILE": "full"}
    out = expect(env, "tokenizer:gpt2:", "127.0.0.1", 60)
    print(out)
