"""Per-submission limits, run for real in every sandbox mode this machine offers (issue 14): a fork bomb stays
under the stated process cap, many processes stay under the memory cap or the result says which number
applies instead, and one submission's /tmp is not another's. Run the non-root half as an unprivileged user:

    su grader -c 'cd REPO && LABSUPPORT_CACHE=/tmp/c VENV/bin/python -m pytest -q -n 0 -p no:randomly \
        tests/grading/test_limits.py'

.ci/run runs as root: there it covers root's paths (pids/memory cgroups in namespaces mode; bwrap, where
root's processes are stated as NOT limited), and re-runs the namespaces half as user `nobody` when that user
can reach the interpreter and the checkout (the last test); else it skips, naming the command above."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import HIDDEN, SOLUTION, edited, load_module, small_spec
from grading import sandbox
from grading.grade import collect, grade

cases = load_module(Path(__file__).parent / "hostile" / "cases.py", "hostile_cases_limits")
ROOT = os.geteuid() == 0
AS_USER = ("run as a non-root user to check the caps an unprivileged instructor gets: "
           "su grader -c '... python -m pytest tests/grading/test_limits.py' (module docstring)")

FORK_COUNTER = """import os, signal, time

def count_pairs(tokens):
    kids = []
    while len(kids) < 200:
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    raise AssertionError(f"FORKED {len(kids)}")"""

TMP_WRITER = """import os

def softmax(x, axis=-1):
    with open("/tmp/labgrade-limits-marker", "w") as f:
        f.write("written by a classmate")
    raise AssertionError("WROTE")"""

TMP_READER = """import os

def softmax(x, axis=-1):
    raise AssertionError(f"SEES {os.path.exists('/tmp/labgrade-limits-marker')}")"""


def _mode_or_skip(mode: str) -> None:
    if mode == "bwrap" and not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    if mode == "namespaces" and sandbox.namespaces_available():
        pytest.skip(f"no namespaces here: {sandbox.namespaces_available()}")


@pytest.fixture(scope="module", params=["namespaces", "bwrap"])
def graded(request, tmp_path_factory):
    mode = request.param
    _mode_or_skip(mode)
    root = tmp_path_factory.mktemp(f"limits-{mode}")
    subs = root / "subs"
    subs.mkdir()
    for name, edits in {"a_fork_counter": {"cell-11": FORK_COUNTER}, "b_tmp_writer": {"cell-04": TMP_WRITER},
                        "c_tmp_reader": {"cell-04": TMP_READER},
                        "d_memory": cases.CASES["memory_many_processes"]}.items():
        nbformat.write(edited(edits), subs / f"{name}.ipynb")
    (subs / "good.ipynb").write_bytes(SOLUTION.read_bytes())
    spec = small_spec(root, test_seconds=5, notebook_seconds=120)
    old = os.environ.pop("LABGRADE_ISOLATION", None)
    try:  # jobs=1: the writer runs before the reader
        results = grade(spec, collect(subs, spec.lab), hidden=HIDDEN, jobs=1, progress=False, isolation=mode)
    finally:
        if old is not None:
            os.environ["LABGRADE_ISOLATION"] = old
    return mode, spec, {r["student"]: r for r in results}


def _message(record, key):
    return next(t for e in record["exercises"] for t in e["tests"] if t["key"] == key)["message"]


def test_honest_student_keeps_full_marks(graded):
    _, _, results = graded
    assert results["good"]["score"] == 9 and results["good"]["isolation"]["mode"] == graded[0]


def test_fork_bomb_stays_under_the_stated_cap(graded):
    mode, spec, results = graded
    iso = results["a_fork_counter"]["isolation"]
    forked = int(_message(results["a_fork_counter"], "99.3/public").split("FORKED ")[1].split()[0])
    if iso["processes"].startswith("NOT limited"):
        assert ROOT, iso["processes"]  # only root escapes RLIMIT_NPROC; then the line says so
        return
    assert str(spec.limits.processes) in iso["processes"]
    assert forked <= spec.limits.processes, (forked, iso["processes"])


def test_memory_capped_or_the_number_that_applies_is_stated(graded):
    _, spec, results = graded
    rec = results["d_memory"]
    iso, msg = rec["isolation"], _message(rec, "99.3/public")
    if "memory cgroup" in iso["memory"]:
        assert "'ok'): 6}" not in msg, msg  # six 200 MB children cannot all exist within 256 + slack MB
    else:
        limits = spec.limits
        assert "NOT per submission" in iso["memory"]
        assert f"{limits.processes} x {limits.memory_mb} MB" in iso["memory"]


def test_tmp_is_private_to_each_submission_or_stated_shared(graded):
    mode, _, results = graded
    assert _message(results["b_tmp_writer"], "99.1/public") == "WROTE"
    seen = _message(results["c_tmp_reader"], "99.1/public")
    fs = results["c_tmp_reader"]["isolation"]["filesystem"]
    if mode == "namespaces" or "per submission" in fs:
        assert seen == "SEES False", (seen, fs)
    else:
        assert "shared by this run's submissions" in fs


@pytest.mark.skipif(ROOT, reason=AS_USER)
def test_non_root_caps_are_per_submission(graded):
    mode, spec, results = graded
    iso = results["a_fork_counter"]["isolation"]
    if mode == "bwrap" and "per submission" not in iso["processes"]:
        pytest.skip(f"namespaces do not nest inside bwrap here: {iso['processes']}")
    assert f"at most {spec.limits.processes} per submission" in iso["processes"]
    assert "user namespace" in iso["processes"] and "PID namespace" in iso["processes"]


@pytest.mark.skipif(not ROOT, reason="already non-root: the tests above are the non-root run")
def test_an_unprivileged_instructor_gets_per_submission_caps():
    """As root (CI): re-run the namespaces half of this file as user `nobody`, where this interpreter is
    reachable by it (a Python under /root usually is not: then run the command in the docstring by hand)."""
    import pwd

    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user `nobody` to run as")
    if sandbox.namespaces_available():
        pytest.skip(f"no namespaces here: {sandbox.namespaces_available()}")
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="labgrade-nobody-"))  # pytest's own tmp dirs are root's alone
    os.chown(tmp_path, user.pw_uid, user.pw_gid)
    try:
        _run_as(user, tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _run_as(user, tmp_path: Path) -> None:
    import subprocess
    import sys

    def drop() -> None:
        os.setgroups([])
        os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
        os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "LABSUPPORT_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    repo = Path(__file__).resolve().parents[2]
    try:
        probe = subprocess.run([sys.executable, "-c", "import grading, pytest"], preexec_fn=drop, env=env,
                               cwd=repo, capture_output=True, text=True)
        why = probe.stderr.strip()[-200:] if probe.returncode else ""
    except OSError as err:
        why = str(err)
    if why:
        pytest.skip(f"user nobody cannot run this Python or read the checkout ({why}); {AS_USER}")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-n", "0", "-p", "no:randomly",
                          "--basetemp", str(tmp_path / "pytest"), __file__, "-k", "namespaces and (fork or non_root)"],
                         preexec_fn=drop, env=env, cwd=repo, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "PASSED tests/grading/test_limits.py::test_non_root_caps_are_per_submission[namespaces]" in run.stdout, \
        run.stdout[-3000:]
