"""The rehearsal server answers like the hub, and the `full` code paths load every asset from it."""

import urllib.error
import urllib.request


def answer(url: str, method: str = "GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def test_server_answers_like_the_hub(hub):
    e = hub.endpoint
    assert answer(f"{e}/openai-community/gpt2/resolve/main/config.json", "HEAD")[0] == 200
    status, headers = answer(f"{e}/openai-community/gpt2/resolve/main/added_tokens.json")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")  # absent file: the hub's 404
    status, headers = answer(f"{e}/nobody/nothing/resolve/main/config.json")
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")  # unknown repo: the hub's 401
    status, _ = answer(f"{e}/api/datasets/stanfordnlp/imdb/revision/main")
    assert status == 200


def test_models_load_by_hub_id(client):
    client("models_by_hub_id", env={"LABSUPPORT_PROFILE": "full"})  # GPT.from_pretrained reads the profile


def test_datasets_load_in_the_real_schema(client):
    client("datasets_in_real_schema")


def test_lab05_stream_with_workers(client):
    client("stream_workers")
