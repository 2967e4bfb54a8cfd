"""The sandbox runner, spawned by grade.py as ``python -m grading.worker SOCKET_FD`` (a fresh interpreter,
never a fork of the trusted grader). It holds nothing a student may not see: the lab's prelude and setup,
the public drivers, the driver half of the hidden tests (compiled, without source), the solution code of
exercises others depend on, and the limits. It never sees a hidden judge, an expected value, the overlay's
path, a results folder or any submission but the one a child is running.

    grade.py (trusted: extraction, judges, results)
      └─ runner (this file; loads the above once, then forks one child per submission on request)
           └─ submission process S: gets ONLY its own job, through a file descriptor the grader passed
              over the socket (the runner never reads it); enters the sandbox (namespaces, the read-only
              view), forks
                └─ W (PID 1 of the submission's PID namespace): runs the exercises in turn
                     └─ exercise process E: rlimits, no privileges; the student's code + drivers (harness.py)

W streams each exercise's recorded data (or failure) as JSON to a pipe only grade.py reads. A crash, timeout
or os._exit in one exercise process costs only the test it was running. Messages are JSON, never pickle.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from grading import sandbox
from grading.harness import Loaded, compile_chunks
from grading.supervise import close_all_but, run_tests
from labsupport.check import EXERCISES
from labsupport.runtime import seed_everything


def _write(fd: int, msg: dict[str, Any]) -> None:
    data = (json.dumps(msg, allow_nan=False) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def load(cfg: dict[str, Any]) -> Loaded:
    """Load what every submission shares, once, before any fork."""
    torch.set_num_threads(1)
    if cfg.get("checks_source"):  # the spec's extra checks file, as text (the view does not show the file)
        from grading.judge import load_checks  # only a spec with its own checks file needs the judge's loader

        load_checks(cfg["checks_source"])
    own = f"labsupport.checks.lab{cfg['lab']}"
    checks = [importlib.import_module(own)] if importlib.util.find_spec(own) is not None else []
    checks += [sys.modules["labgrade_checks"]] if "labgrade_checks" in sys.modules else []
    for module in checks:  # what a check's drivers would import lazily in every exercise process (PRELOAD)
        for name in getattr(module, "PRELOAD", ()):
            importlib.import_module(name)
    base: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(cfg["prelude"] + "\n" + cfg["setup"], "<prelude>", "exec"), base)  # noqa: S102 -- trusted
    hidden: dict[str, Any] = {}
    for fname, source in cfg["hidden_drivers"].items():  # the driver half only; compiled without its text
        module = types.ModuleType(f"hidden_{Path(fname).stem}")
        exec(compile(source, "<hidden>", "exec"), module.__dict__)  # noqa: S102 -- instructor's drivers
        hidden.update({f"{fname}::{k[len('drive_'):]}": v for k, v in vars(module).items()
                       if k.startswith("drive_") and callable(v)})
    drivers = {}
    for key, t in cfg["tests"].items():
        if t["public"]:
            if t["public"] not in EXERCISES:
                raise LookupError(f"public check {t['public']} is not registered (labsupport/checks/lab{cfg['lab']}.py "
                                  "or the spec's `checks` file)")
            drivers[key] = EXERCISES[t["public"]].drive
        elif t["hidden"] in hidden:
            drivers[key] = hidden[t["hidden"]]
        else:
            raise LookupError(f"hidden test {t['hidden']} has no drive_ function")
    deps = {}
    for ex_id, chunks in cfg["deps"].items():
        ns = dict(base)
        for _chunk, code in compile_chunks(chunks["chunks"], lines=False):
            exec(code, ns)  # noqa: S102 -- the solution's code
        deps[ex_id] = {n: ns[n] for n in chunks["names"] if n in ns}
    return Loaded(base, deps, drivers, cfg["tests"], seed_everything, cfg["limits"]["memory_mb"],
                  cfg["limits"]["output_mb"])


def _grader(loaded: Loaded, job: dict, limits: SimpleNamespace, wfd: int, pidns: bool, start: float) -> None:
    """W: run every exercise of one submission, streaming each one's data to grade.py."""
    end = start + limits.notebook_seconds
    for ex in job["exercises"]:
        if ex.get("reason"):
            res = {"id": ex["id"], "tests": {k: {"message": ex["reason"], "seconds": 0.0} for k in ex["tests"]}}
        elif time.monotonic() >= end:
            msg = f"not run: the submission used up its {limits.notebook_seconds:.0f} s time limit"
            res = {"id": ex["id"], "tests": {k: {"message": msg, "seconds": 0.0} for k in ex["tests"]}}
        else:
            res = run_tests(loaded, ex, job, limits, end, pidns)
        _write(wfd, {"t": "exercise", **res})
    _write(wfd, {"t": "end"})


def _read_job(fd: int) -> dict:
    with os.fdopen(fd, "rb") as f:
        return json.loads(f.read())


def _submission(loaded: Loaded, cfg: dict, job_fd: int, out_fd: int, hello: int, go: int) -> None:
    """S: read this submission's job, enter the sandbox, then fork W (PID 1 of the new PID namespace)."""
    limits, mode = SimpleNamespace(**cfg["limits"]), cfg["mode"]
    try:
        sandbox.die_with_parent()
        close_all_but({job_fd, out_fd, hello, go})
        job = _read_job(job_fd)
        nested = mode == "namespaces" or cfg.get("nested")  # this submission's own user/PID/mount namespaces
        if nested:
            sandbox.unshare_namespaces()
        os.write(hello, b"u")
        if os.read(go, 1) != b"g":
            os._exit(3)
        os.close(hello), os.close(go)
        if mode == "namespaces":
            workdir = sandbox.enter_view(cfg["view"], max(32, 4 * limits.output_mb))
        elif nested:  # inside bwrap's view already: only a /tmp of its own
            workdir = sandbox.private_tmp(max(32, 4 * limits.output_mb))
        else:
            workdir = Path(tempfile.mkdtemp(prefix="labgrade-s", dir=cfg["scratch"]))
        if mode == "none" and cfg.get("run_as") and os.geteuid() == 0:
            os.chown(workdir, *sandbox.user_ids(cfg["run_as"]))
            job["run_as"] = cfg["run_as"]
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                sandbox.die_with_parent()
                sandbox.make_undumpable()
                if nested:
                    sandbox.mount_proc()
                os.chdir(workdir)
                os.environ["TMPDIR"] = os.environ["HOME"] = str(workdir)
                tempfile.tempdir = None
                _grader(loaded, job, limits, out_fd, bool(nested), start)
            except BaseException:
                _write(out_fd, {"t": "grader_error", "message": traceback.format_exc(limit=4)[-1500:]})
            os._exit(0)
        os.waitpid(pid, 0)
        if not nested:
            shutil.rmtree(workdir, ignore_errors=True)
    except BaseException:
        _write(out_fd, {"t": "grader_error", "message": traceback.format_exc(limit=4)[-1500:]})
    os._exit(0)


def serve(loaded: Loaded, cfg: dict, sock: socket.socket, emit) -> None:
    """Fork a submission process per job the grader sends (a job file + a result pipe, as descriptors);
    kill one on request ("k<id>") or when the grader goes away."""
    limits = SimpleNamespace(**cfg["limits"])
    cgroups = sandbox.Cgroups(str(os.getpid()), cfg["jobs"])
    emit({"t": "ready", "cgroups": sorted(cgroups.active), "run_as": cfg.get("run_as") if os.geteuid() == 0 else "",
          "nested": bool(cfg.get("nested"))})
    running: dict[int, tuple[int, list]] = {}  # job id -> (pid, cgroups)
    try:
        while True:
            for jid, (pid, group) in list(running.items()):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    cgroups.remove(group)
                    del running[jid]
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            msg, fds, _flags, _addr = socket.recv_fds(sock, 64, 2)
            if not msg or msg == b"q":
                return  # done, or the grader is gone
            if msg.startswith(b"k"):
                jid = int(msg[1:])
                if jid in running:
                    try:
                        os.kill(running[jid][0], signal.SIGKILL)  # W and its namespace die with S
                    except ProcessLookupError:
                        pass
                continue
            jid = int(msg[1:])
            job_fd, out_fd = fds
            (hr, hw), (gr, gw) = os.pipe(), os.pipe()
            sys.stdout.flush(), sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                sock.close()
                _submission(loaded, cfg, job_fd, out_fd, hw, gr)
            for fd in (job_fd, out_fd, hw, gr):
                os.close(fd)
            group = []
            if os.read(hr, 1) == b"u":
                group = cgroups.add(f"s{pid}", pid, limits.processes + 3, limits.memory_mb)  # + S, W, E
                if cfg["mode"] == "namespaces" or cfg.get("nested"):
                    try:
                        sandbox.write_id_maps(pid)
                    except OSError:
                        pass  # S fails to mount and reports it
                os.write(gw, b"g")
            os.close(hr), os.close(gw)
            running[jid] = (pid, group)
    finally:
        for pid, _group in running.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, _group in running.values():
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        cgroups.close()


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the prelude prints goes to the log, not the protocol

    def emit(msg: dict) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    cfg = json.loads(sys.stdin.readline())
    try:
        loaded = load(cfg)
    except Exception as err:
        emit({"t": "fatal", "message": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=6)})
        return 2
    gc.collect()
    gc.freeze()  # keep forked children from copying the preloaded heap when they touch refcounts
    # bwrap: one sandbox around this runner; where namespaces nest inside it (bwrap not setuid), every
    # submission also gets its own user, PID, mount and IPC namespaces, as in namespaces mode
    cfg["nested"] = cfg["mode"] == "bwrap" and sandbox.nested_namespaces_available()
    cfg["scratch"] = tempfile.mkdtemp(prefix="labgrade-")  # bwrap/none: per-submission temp dirs inside
    cfg["view"]["root"] = tempfile.mkdtemp(prefix="labgrade-root-")  # namespaces: the new root's mount point
    try:
        serve(loaded, cfg, sock, emit)
    finally:
        shutil.rmtree(cfg["scratch"], ignore_errors=True)
        os.rmdir(cfg["view"]["root"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
