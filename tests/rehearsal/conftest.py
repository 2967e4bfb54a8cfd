"""The `full` rehearsal: a real hub server (olah, local-mirror mode) on localhost serves hub-shaped repos
under the real ids, and clients reach it through ``HF_ENDPOINT`` only.

Skipped unless pytest is given ``--rehearse`` (``.ci/run`` does): the server lives in its own virtualenv
(made on first use, see labsupport/rehearse/__init__.py) and the suite runs every lab in full.

Why olah plus one translation: olah 0.5.4 is the newest release, and its local mirror answers a file that the
repo does not hold with 401 "repo not found", where the hub answers 404 + ``X-Error-Code: EntryNotFound``;
transformers 5 probes optional files and reads that 401 as "not a valid model identifier". Adding those
files would make the mirror lie about the real repos, so labsupport/rehearse/server.py wraps olah's ASGI app
in one middleware that rewrites exactly that case (tests/test_rehearse_server.py) and leaves every other
answer -- the hub API, file bytes, repo and revision errors -- to olah.

Clients run in subprocesses (or notebook kernels): huggingface_hub reads ``HF_ENDPOINT`` when it is first
imported, and this pytest process has imported it already with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labsupport import rehearse
from labsupport.rehearse import mirror as mirror_mod

HERE = Path(__file__).resolve().parent
LOGS = Path("build/rehearse-logs")


@pytest.fixture(autouse=True)
def _only_with_rehearse_flag(request):
    if not request.config.getoption("--rehearse"):
        pytest.skip("the full rehearsal runs with --rehearse (python -m pytest tests/rehearsal --rehearse)")


@pytest.fixture(scope="session")
def mirror(request) -> Path:
    if not request.config.getoption("--rehearse"):
        pytest.skip("needs --rehearse")
    return mirror_mod.mirror_dir()


def start(request, mirror: Path, workdir: Path) -> rehearse.HubServer:
    """A server owned by this session (its own process group, stopped by PID); its log is kept under
    build/rehearse-logs/ when any test failed."""
    server = rehearse.start_server(mirror, workdir)

    def stop():
        server.stop()
        if request.session.testsfailed:
            LOGS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.log, LOGS / f"{workdir.name}.log")
            print(f"\n[rehearsal] server log kept: {LOGS / (workdir.name + '.log')}")

    request.addfinalizer(stop)
    return server


@pytest.fixture(scope="session")
def hub(request, mirror, tmp_path_factory) -> rehearse.HubServer:
    return start(request, mirror, tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="session")
def hub_env(hub, tmp_path_factory) -> dict[str, str | None]:
    """A client environment: HF_ENDPOINT = the server, a fresh HF cache, no offline switch, no profile."""
    return rehearse.client_env(hub.endpoint, tmp_path_factory.mktemp("hf-home"))


def run_client(check: str, env: dict[str, str | None], timeout: float = 300, **kwargs: str):
    """Run ``client_checks.<check>(**kwargs)`` in a fresh Python with `env`; return the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(HERE)}
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    code = f"import client_checks; client_checks.{check}({args})"
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def client(hub_env):
    def run(check: str, env: dict[str, str | None] | None = None, **kwargs):
        proc = run_client(check, {**hub_env, **(env or {})}, **kwargs)
        if proc.returncode != 0:
            pytest.fail(f"client check {check} failed ({proc.returncode}):\n"
                        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        return proc.stdout

    return run


@pytest.fixture(scope="session")
def broken_hub(request, mirror, tmp_path_factory) -> rehearse.HubServer:
    """A second server whose mirror breaks one thing per dataset, as a hub-side change would:
    poem_sentiment's `verse_text` column renamed to `text`; sst2 without its validation split."""
    root = tmp_path_factory.mktemp("broken-mirror") / "mirror"
    shutil.copytree(mirror, root, symlinks=True)
    poem = "google-research-datasets/poem_sentiment"
    splits = {s: ds.rename_column("verse_text", "text") for s, ds in mirror_mod.dataset_splits(poem).items()}
    mirror_mod.write_dataset(root / "datasets" / poem, poem, splits)
    mirror_mod.commit_all(root / "datasets" / poem, "rename verse_text to text")
    sst2 = "stanfordnlp/sst2"
    splits = {s: ds for s, ds in mirror_mod.dataset_splits(sst2).items() if s != "validation"}
    (root / "datasets" / sst2 / mirror_mod.DATASETS[sst2][1]["validation"]).unlink()
    mirror_mod.write_dataset(root / "datasets" / sst2, sst2, splits)
    mirror_mod.commit_all(root / "datasets" / sst2, "drop the validation split")
    return start(request, root, tmp_path_factory.mktemp("broken-hub"))
