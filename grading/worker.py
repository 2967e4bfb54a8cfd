"""The grading worker, started by grade.py as ``python -m grading.worker``.

It pays for Python, torch, labsupport, the lab's prelude, checks and hidden tests once, then forks:

    worker (trusted; reads config + jobs on stdin, writes JSON events on stdout)
      └─ submission process (S): enters the sandbox (namespaces, mounts), then forks
           └─ grader (W, PID 1 of the submission's PID namespace): runs the exercises in turn
                └─ exercise process (E): rlimits, no privileges, the student's code + tests (harness.py)

A crash, timeout or os._exit in one exercise process costs only the test it was running (W forks a
fresh E for the remaining tests); W and S report every finished exercise as soon as it ends, so a
submission that has to be killed keeps the results it already had. Messages are JSON, never pickle.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import secrets
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from grading import sandbox
from grading.harness import Context, compile_chunks
from grading.supervise import close_all_but, run_tests


def _write(fd: int, msg: dict[str, Any]) -> None:
    data = (json.dumps(msg) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def build_context(cfg: dict[str, Any]) -> Context:
    """Load everything trusted, once, before any fork."""
    import torch
    import torch._dynamo  # noqa: F401  (an optimizer's first step imports it, and it re-wraps torch.manual_seed:

    # import it before the monkeypatching snapshot, or a check that trains a model looks like tampering)
    from labsupport.check import EXERCISES
    from labsupport.runtime import seed_everything

    torch.set_num_threads(1)
    extra: list[types.ModuleType] = []
    if cfg.get("checks"):
        spec = importlib.util.spec_from_file_location(f"labgrade_checks_{cfg['lab']}", cfg["checks"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        extra.append(module)
    base: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(cfg["prelude"] + "\n" + cfg["setup"], "<prelude>", "exec"), base)  # noqa: S102 -- trusted
    hidden: dict[str, Any] = {}
    for fname, source in cfg["hidden"].items():
        module = types.ModuleType(f"hidden_{Path(fname).stem}")
        exec(compile(source, "<hidden>", "exec"), module.__dict__)  # noqa: S102 -- trusted, private
        extra.append(module)
        hidden.update({f"{fname}::{k}": v for k, v in vars(module).items() if callable(v)})
    own = f"labsupport.checks.lab{cfg['lab']}"  # only this lab's checks: others may import heavy libraries
    if importlib.util.find_spec(own) is not None:
        importlib.import_module(own)
    wanted = {t["public"] for t in cfg["tests"].values() if t["public"]}
    if wanted - set(EXERCISES):
        raise LookupError(f"public check(s) {', '.join(sorted(wanted - set(EXERCISES)))} not registered "
                          f"(in labsupport/checks/lab{cfg['lab']}.py or the spec's `checks` file)")
    checks = {k: EXERCISES[k] for k in wanted}
    public = {k: ex.func for k, ex in checks.items()}
    missing = [t["hidden"] for t in cfg["tests"].values() if t["hidden"] and t["hidden"] not in hidden]
    if missing:
        raise LookupError(f"hidden test(s) not found: {', '.join(missing)}")
    deps = {}
    for ex_id, chunks in cfg["deps"].items():
        ns = dict(base)
        for _chunk, code in compile_chunks(chunks["chunks"]):
            exec(code, ns)  # noqa: S102 -- the solution's code
        deps[ex_id] = {n: ns[n] for n in chunks["names"] if n in ns}
    ctx = Context(base, deps, public, hidden, cfg["tests"], seed_everything, cfg["limits"]["memory_mb"],
                  cfg["limits"]["output_mb"])
    ctx.info = {k: {"title": ex.title, "hint": ex.hint} for k, ex in checks.items()}
    ctx.take_snapshot(extra)
    return ctx


def _grader(ctx: Context, job: dict, limits: SimpleNamespace, wfd: int, pidns: bool, start: float) -> None:
    """W: grade every exercise of one submission, streaming each result to the worker."""
    end = start + limits.notebook_seconds
    for ex in job["exercises"]:
        if ex.get("reason"):
            res = {"id": ex["id"], "tests": {k: {"passed": False, "message": ex["reason"], "seconds": 0.0}
                                             for k in ex["tests"]}}
        elif time.monotonic() >= end:
            msg = f"not run: the submission used up its {limits.notebook_seconds:.0f} s time limit"
            res = {"id": ex["id"], "tests": {k: {"passed": False, "message": msg, "seconds": 0.0} for k in ex["tests"]}}
        else:
            res = run_tests(ctx, ex, job, limits, end, pidns)
        _write(wfd, {"t": "exercise", **res})
    _write(wfd, {"t": "end"})


def _submission(ctx: Context, job: dict, cfg: dict, workdir: Path, fds: dict[str, int]) -> None:
    """S: enter the sandbox, then fork W (PID 1 of the new PID namespace) and wait for it."""
    limits, mode = SimpleNamespace(**cfg["limits"]), cfg["mode"]
    try:
        sandbox.die_with_parent()
        close_all_but(set(fds.values()))
        if mode == "namespaces":
            sandbox.unshare_namespaces()
        os.write(fds["hello"], b"u")
        if os.read(fds["go"], 1) != b"g":
            os._exit(3)
        if mode == "namespaces":
            masks = [Path(m) for m in cfg["masks"]]
            sandbox.setup_mounts(workdir, masks, max(32, 4 * limits.output_mb))
        elif cfg.get("run_as") and os.geteuid() == 0:
            os.chown(workdir, *sandbox.user_ids(cfg["run_as"]))
            job["run_as"] = cfg["run_as"]
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                sandbox.die_with_parent()
                sandbox.make_undumpable()
                if mode == "namespaces":
                    sandbox.mount_proc()
                os.chdir(workdir)
                os.environ["TMPDIR"] = str(workdir)
                tempfile.tempdir = None
                _grader(ctx, job, limits, fds["out"], mode == "namespaces", start)
            except BaseException:
                _write(fds["out"], {"t": "grader_error", "message": traceback.format_exc(limit=4)[-1500:]})
            os._exit(0)
        os.waitpid(pid, 0)
    except BaseException:
        _write(fds["out"], {"t": "grader_error", "message": traceback.format_exc(limit=4)[-1500:]})
    os._exit(0)


def serve(ctx: Context, cfg: dict, jobs: list[dict], emit, cgroups: sandbox.Cgroups) -> None:
    """Run submissions `cfg['jobs']` at a time; emit one result per submission as it finishes."""
    limits = SimpleNamespace(**cfg["limits"])
    root = Path(tempfile.mkdtemp(prefix="labgrade-"))
    queue, running = deque(jobs), {}
    try:
        while queue or running:
            while queue and len(running) < cfg["jobs"]:
                job = queue.popleft()
                workdir = root / f"s{len(queue)}-{secrets.token_hex(4)}"
                workdir.mkdir(mode=0o777)
                (r, w), (hr, hw), (gr, gw) = os.pipe(), os.pipe(), os.pipe()
                sys.stdout.flush(), sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _submission(ctx, job, cfg, workdir, {"out": w, "hello": hw, "go": gr})
                for fd in (w, hw, gr):
                    os.close(fd)
                group = []
                if os.read(hr, 1) == b"u":
                    group = cgroups.add(f"s{pid}", pid, limits.processes + 4)
                    if cfg["mode"] == "namespaces":
                        sandbox.write_id_maps(pid)
                    os.write(gw, b"g")
                os.close(hr), os.close(gw)
                deadline = time.monotonic() + limits.notebook_seconds + 10
                running[r] = {"pid": pid, "job": job, "buf": b"", "ex": {}, "err": None, "deadline": deadline,
                              "group": group, "workdir": workdir, "killed": False}
            ready, _, _ = select.select(list(running), [], [], 0.2)
            for r, slot in list(running.items()):
                if time.monotonic() > slot["deadline"]:
                    os.kill(slot["pid"], signal.SIGKILL)  # W and its namespace die with S
                    slot["deadline"], slot["killed"] = float("inf"), True
                if r not in ready:
                    continue
                data = os.read(r, 65536)
                slot["buf"] += data
                while b"\n" in slot["buf"]:
                    line, slot["buf"] = slot["buf"].split(b"\n", 1)
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if msg["t"] == "exercise":
                        slot["ex"][msg["id"]] = msg["tests"]
                    elif msg["t"] == "grader_error":
                        slot["err"] = msg["message"]
                if not data:
                    os.close(r)
                    os.waitpid(slot["pid"], 0)
                    cgroups.remove(slot["group"])
                    shutil.rmtree(slot["workdir"], ignore_errors=True)
                    del running[r]
                    emit({"t": "result", "key": slot["job"]["key"], "exercises": slot["ex"], "error": slot["err"],
                          "killed": slot["killed"]})
    finally:
        for slot in running.values():
            try:
                os.kill(slot["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        cgroups.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the prelude prints goes to the log, not the protocol

    def emit(msg: dict) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    lines = sys.stdin.read().splitlines()
    cfg, jobs = json.loads(lines[0]), [json.loads(x) for x in lines[1:] if x.strip()]
    try:
        ctx = build_context(cfg)
    except Exception as err:
        emit({"t": "fatal", "message": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=6)})
        return 2
    gc.collect()
    gc.freeze()  # keep forked children from copying the preloaded heap when they touch refcounts
    cgroups = sandbox.Cgroups(str(os.getpid()), cfg["jobs"])
    run_as = cfg.get("run_as") if os.geteuid() == 0 else ""
    emit({"t": "ready", "cgroups": sorted(cgroups.active), "checks": ctx.info, "run_as": run_as})
    serve(ctx, cfg, jobs, emit, cgroups)
    emit({"t": "finished"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
