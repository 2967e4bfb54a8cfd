"""Launch olah (a self-hosted Hugging Face hub mirror) in local-mirror mode, with one translation in front.

Run as a script by the Python of the *server* environment (``python server.py --mirror DIR --port N``),
never imported by the lab environment: olah's dependencies (fastapi-utils pins psutil<6, which breaks
ipython's psutil>=7) must not be installed beside the labs, so the server gets its own virtualenv
(see ``labsupport/rehearse/__init__.py``). This file therefore imports only the standard library,
olah and what olah brings (starlette, uvicorn).

Why a translation at all: olah 0.5.4 (the newest release) answers a request for a file that its
local mirror's git tree does not hold with 401 + ``X-Error-Code: RepoNotFound`` (it falls through to
"ask upstream", which offline mode refuses as an unknown repo). The hub answers 404 +
``X-Error-Code: EntryNotFound``, and clients depend on the difference: transformers 5 probes optional
files (``added_tokens.json``, ``chat_template.jinja``, ...) and reads a 401 as "not a valid model
identifier". Adding those files to the mirror would make the rehearsal lie about the real repos, so
``EntryNotFoundMiddleware`` rewrites exactly that case: a non-2xx answer to ``resolve/<rev>/<path>``
(or an API tree listing) for a repository the mirror holds, at a revision git knows, whose tree lacks
``<path>``. One more olah bug is papered over: its front page ``GET /`` is a 500 in the 0.5.4 wheel (a
missing template), where the hub's answers 200 -- and profile detection GETs it -- so an error there becomes
a one-line 200 page. Everything else -- every 2xx, every other error, every API route -- is olah's own
answer, untouched.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

# a file: /{org}/{name}/resolve/{rev}/{path} (models), /{datasets|spaces}/{org}/{name}/resolve/{rev}/{path};
# a folder listing: /api/{models|datasets|spaces}/{org}/{name}/tree/{rev}/{path}
ENTRY_ROUTES = [
    re.compile(r"^/(?:(?P<type>models|datasets|spaces)/)?(?P<org>[^/]+)/(?P<name>[^/]+)/resolve/"
               r"(?P<rev>[^/]+)/(?P<path>.+)$"),
    re.compile(r"^/api/(?P<type>models|datasets|spaces)/(?P<org>[^/]+)/(?P<name>[^/]+)/tree/"
               r"(?P<rev>[^/]+)/(?P<path>.+?)/?$"),
]


def missing_entry(mirror: Path, url_path: str) -> bool:
    """True when `url_path` asks for a file or folder of a mirrored repo at a known revision and the tree lacks it."""
    path = unquote(url_path)
    m = next((m for m in (r.match(path) for r in ENTRY_ROUTES) if m), None)
    if m is None:
        return False
    repo = mirror / (m["type"] or "models") / m["org"] / m["name"]
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        return False  # not ours: olah's answer stands (unknown repo -> 401 RepoNotFound, as on the hub)

    def git(*args: str) -> bool:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True).returncode == 0

    rev = m["rev"]
    if not git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"):
        return False  # unknown revision: not an entry question
    return not git("cat-file", "-e", f"{rev}:{m['path']}")


class EntryNotFoundMiddleware:
    """ASGI middleware: olah's non-2xx answer for a file absent from a mirrored tree -> the hub's 404."""

    def __init__(self, app, mirror: Path) -> None:
        self.app, self.mirror = app, mirror

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        held: list[dict] = []  # an error response, kept until we know whether it is an entry question

        async def capture(message):
            if held or (message["type"] == "http.response.start" and message["status"] >= 300):
                held.append(message)
                return
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            # olah 0.5.4's GET of a file missing from a mirrored tree raises KeyError (a 500, already held);
            # so does its front page (a missing template)
            if not (held and (scope["path"] == "/" or missing_entry(self.mirror, scope["path"]))):
                raise
        if not held:
            return
        if scope["path"] == "/":
            # olah 0.5.4's front page is a 500 (its wheel lacks static/index.html, and it calls starlette 1.x's
            # TemplateResponse with the old signature); the hub's answers 200, and profile detection GETs it
            body = b"<!doctype html><title>olah</title><p>olah local mirror (labsupport rehearsal)</p>\n"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        if missing_entry(self.mirror, scope["path"]):
            body = b'{"error":"Entry not found"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"x-error-code", b"EntryNotFound"), (b"x-error-message", b"Entry not found")]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        for message in held:  # not an entry question: olah's own answer
            await send(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True, help="folder with {models,datasets}/ORG/NAME git repos")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workdir", type=Path, required=True, help="olah's config, cache and logs")
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    netloc = f"{args.host}:{args.port}"
    config = args.workdir / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "{args.host}"\nport = {args.port}\n'
        f'repos-path = "{args.workdir / "repos"}"\n'
        f'mirror-netloc = "{netloc}"\nmirror-lfs-netloc = "{netloc}"\n'
        f'mirrors-path = ["{args.mirror.resolve()}"]\n'
        "[accessibility]\noffline = true\n"
    )
    sys.argv = ["olah", "--config", str(config), "--log-path", str(args.workdir / "logs")]
    # olah is installed only in the server's own virtualenv (see rehearse/__init__.py)
    import uvicorn
    from olah import server

    server.init()
    uvicorn.run(EntryNotFoundMiddleware(server.app, args.mirror.resolve()), host=args.host, port=args.port,
                log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
