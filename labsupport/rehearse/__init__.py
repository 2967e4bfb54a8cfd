"""Rehearse the `full` profile against a real hub server on localhost.

No machine of this project reaches huggingface.co, yet most students run `full`. The rehearsal serves
hub-shaped repositories under the real ids (`mirror.py`) with olah, a maintained self-hosted Hugging Face
mirror, in local-mirror mode (`server.py`), and points every client at it with ``HF_ENDPOINT``. Then
each lab runs with ``LABSUPPORT_PROFILE`` unset, so profile detection has to choose `full` by itself.

The server runs in its own virtualenv (``$LABSUPPORT_CACHE/rehearse/olah-<version>``, made on first use
with ``pip install olah==<version>``): olah depends on fastapi-utils, which pins ``psutil<6`` and would
downgrade the psutil that ipython (the notebook kernel) requires. The labs' environment never imports olah.

What it proves: the ids, configs, split/column/label names, file layouts, tokenizer files and code paths
that only `full` runs (``from_pretrained(<hub id>)``, hub parquet streaming, bertviz). What it does not
prove: real weights (numbers), real sizes (memory, time) and real download times.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labsupport.io import cache_dir
from labsupport.rehearse import mirror as mirror_mod
from labsupport.runner import REPO, find_labs, run_labs

OLAH_VERSION = "0.5.4"
SERVER_SCRIPT = Path(__file__).resolve().parent / "server.py"
# what a client's environment must not carry into a rehearsal: offline switches and a chosen profile
CLEARED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "LABSUPPORT_PROFILE")


def server_python(install: bool = True) -> Path:
    """The Python of the server's own virtualenv ($LABSUPPORT_REHEARSE_PYTHON overrides), made on first use."""
    override = os.environ.get("LABSUPPORT_REHEARSE_PYTHON")
    if override:
        return Path(override)
    venv = cache_dir("rehearse") / f"olah-{OLAH_VERSION}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    if not install:
        raise FileNotFoundError(f"no rehearsal server environment at {venv}; run `python -m labsupport rehearse`")
    print(f"[labsupport] creating the rehearsal server's virtualenv ({venv}, olah=={OLAH_VERSION}) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
    subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", f"olah=={OLAH_VERSION}"])
    (venv / ".complete").write_text(OLAH_VERSION + "\n")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process (Linux): SIGTERM when the process that started it dies, even by SIGKILL, so a
    killed test run leaves no server behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class HubServer:
    """A running olah process serving `mirror`; owned by this process (its own session, killed by PID)."""

    endpoint: str
    process: subprocess.Popen
    workdir: Path

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET (None when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def start_server(mirror: Path, workdir: Path, python: Path | None = None, port: int | None = None,
                 timeout: float = 60.0) -> HubServer:
    """Start olah on 127.0.0.1 (a free port) serving `mirror`; wait until it answers for a mirrored repo."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    python = python or server_python()
    log = open(workdir / "server.log", "ab")
    cmd = [str(python), str(SERVER_SCRIPT), "--mirror", str(mirror), "--port", str(port), "--workdir", str(workdir)]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, cwd=workdir, preexec_fn=_die_with_parent)
    log.close()
    server = HubServer(f"http://127.0.0.1:{port}", process, workdir)
    probe = f"{server.endpoint}/api/models/openai-community/gpt2/revision/main"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the rehearsal hub server exited ({process.returncode}); log {server.log}:\n"
                               + server.log_tail())
        if http_status(probe) == 200:
            return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"the rehearsal hub server did not answer within {timeout:.0f}s; log {server.log}:\n"
                       + server.log_tail())


def client_env(endpoint: str, hf_home: Path) -> dict[str, str | None]:
    """Variables for a process that should see `endpoint` as the hub: a fresh HF cache, nothing offline,
    no profile chosen (detection must pick `full`), the tiny scale. None removes a variable."""
    env: dict[str, str | None] = dict.fromkeys(CLEARED_ENV)
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", LABSUPPORT_SCALE="tiny")
    return env


@contextlib.contextmanager
def serving(mirror: Path | None = None, keep_logs: Path | None = None) -> Iterator[HubServer]:
    """Build (or reuse) the mirror, start the server, yield it, stop it. Its log is copied to `keep_logs`
    when the body fails."""
    mirror = mirror or mirror_mod.mirror_dir()
    workdir = Path(tempfile.mkdtemp(prefix="labsupport-hub-"))
    server = start_server(mirror, workdir)
    failed = False
    try:
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        server.stop()
        if failed and keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.log, keep_logs / "rehearsal-server.log")
        shutil.rmtree(workdir, ignore_errors=True)


def main(labs: list[str] | None, out: Path, timeout: int, serve: bool) -> int:
    """`python -m labsupport rehearse`: every lab (or `labs`) in `full` against the rehearsal server."""
    print("[labsupport] building the hub-shaped mirror (cached after the first run) ...", flush=True)
    mirror = mirror_mod.mirror_dir()
    with serving(mirror, keep_logs=out) as server:
        hf_home = Path(tempfile.mkdtemp(prefix="labsupport-hf-home-"))
        env = client_env(server.endpoint, hf_home)
        print(f"[labsupport] rehearsal hub at {server.endpoint} (olah {OLAH_VERSION}, local mirror {mirror})")
        try:
            if serve:
                exports = " ".join(f"{k}={v}" for k, v in env.items() if v is not None)
                print(f"[labsupport] serving until Ctrl-C; in another shell:\n  export {exports}\n"
                      f"  unset {' '.join(CLEARED_ENV)}", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    server.process.wait()
                return 0
            print("[labsupport] LABSUPPORT_PROFILE unset: each lab's setup() must detect full by itself")
            code = run_labs(find_labs(REPO / "notebooks", labs), None, timeout, out, "tiny", **env)
            if code:
                out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(server.log, out / "rehearsal-server.log")
                print(f"[labsupport] server log kept: {out / 'rehearsal-server.log'}", file=sys.stderr)
            return code
        finally:
            shutil.rmtree(hf_home, ignore_errors=True)
