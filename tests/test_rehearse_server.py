"""The one translation in front of olah (labsupport/rehearse/server.py), without olah: a real git repository
and a stand-in ASGI app that answers the way olah 0.5.4 does for an unknown entry (401 RepoNotFound, or a
500 after a KeyError). The server itself is exercised against real clients in tests/rehearsal/."""

import asyncio
import subprocess

import pytest

from labsupport.rehearse import server
from labsupport.rehearse.mirror import commit_all


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    model = root / "models" / "openai-community" / "gpt2"
    (model / "onnx").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "onnx" / "model.onnx").write_text("x")
    commit_all(model, "init")
    data = root / "datasets" / "stanfordnlp" / "imdb"
    (data / "plain_text").mkdir(parents=True)
    (data / "plain_text" / "train-00000-of-00001.parquet").write_text("x")
    commit_all(data, "init")
    return root


@pytest.mark.parametrize("path, missing", [
    ("/openai-community/gpt2/resolve/main/config.json", False),  # present
    ("/openai-community/gpt2/resolve/main/added_tokens.json", True),  # absent from the tree
    ("/openai-community/gpt2/resolve/main/onnx/model.onnx", False),  # nested, present
    ("/openai-community/gpt2/resolve/main/onnx/decoder.onnx", True),
    ("/models/openai-community/gpt2/resolve/main/chat_template.jinja", True),  # explicit models/ prefix
    ("/openai-community/gpt2/resolve/no-such-branch/added_tokens.json", False),  # a revision question
    ("/nobody/nothing/resolve/main/config.json", False),  # a repo question: olah's 401 stands
    ("/datasets/stanfordnlp/imdb/resolve/main/plain_text/train-00000-of-00001.parquet", False),
    ("/datasets/stanfordnlp/imdb/resolve/main/plain_text/test-00000-of-00001.parquet", True),
    ("/api/models/openai-community/gpt2/tree/main/additional_chat_templates", True),  # folder listing
    ("/api/models/openai-community/gpt2/tree/main/onnx", False),
    ("/api/datasets/stanfordnlp/imdb/tree/main/plain_text/", False),
    ("/api/models/openai-community/gpt2/revision/main", False),  # not an entry route
    ("/openai-community/gpt2/resolve/main/added%5Ftokens.json", True),  # percent-encoded
])
def test_missing_entry(mirror, path, missing):
    assert server.missing_entry(mirror, path) is missing


def test_missing_entry_at_an_older_commit(mirror, tmp_path):
    repo = mirror / "models" / "openai-community" / "gpt2"
    first = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert server.missing_entry(mirror, f"/openai-community/gpt2/resolve/{first}/config.json") is False
    assert server.missing_entry(mirror, f"/openai-community/gpt2/resolve/{first}/vocab.json") is True


def olah_like(status: int, raise_after: bool = False):
    """An ASGI app answering every request with `status` (and optionally raising afterwards, as olah's
    KeyError does behind starlette's ServerErrorMiddleware)."""

    async def app(scope, receive, send):
        headers = [(b"x-error-code", b"RepoNotFound")] if status == 401 else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"olah says %d" % status})
        if raise_after:
            raise KeyError("Blob or Tree named 'added_tokens.json' not found")

    return app


def call(app, path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": method, "path": path, "headers": []}, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("status, raise_after", [(401, False), (500, True)])
def test_absent_entry_becomes_the_hubs_404(mirror, status, raise_after):
    app = server.EntryNotFoundMiddleware(olah_like(status, raise_after), mirror)
    code, headers, body = call(app, "/openai-community/gpt2/resolve/main/added_tokens.json")
    assert (code, headers[b"x-error-code"]) == (404, b"EntryNotFound")
    assert b"Entry not found" in body
    code, headers, body = call(app, "/openai-community/gpt2/resolve/main/added_tokens.json", "HEAD")
    assert (code, headers[b"x-error-code"], body) == (404, b"EntryNotFound", b"")


def test_everything_else_is_olahs_own_answer(mirror):
    app = server.EntryNotFoundMiddleware(olah_like(401), mirror)
    code, headers, body = call(app, "/nobody/nothing/resolve/main/config.json")  # unknown repo
    assert (code, headers[b"x-error-code"], body) == (401, b"RepoNotFound", b"olah says 401")
    ok = server.EntryNotFoundMiddleware(olah_like(200), mirror)
    assert call(ok, "/openai-community/gpt2/resolve/main/config.json")[0] == 200
    # a 200 is passed through even for a path git lacks: olah, not we, decides what exists
    assert call(ok, "/openai-community/gpt2/resolve/main/added_tokens.json")[0] == 200
    crash = server.EntryNotFoundMiddleware(olah_like(500, raise_after=True), mirror)
    with pytest.raises(KeyError):  # a crash that is not an entry question is not hidden
        call(crash, "/openai-community/gpt2/resolve/main/config.json")
