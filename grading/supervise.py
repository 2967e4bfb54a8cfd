"""Supervising one exercise (the grader process W's side): fork an exercise process, follow its JSON
reports, enforce the per-test CPU-time limit (with a wall-clock backstop) and the submission's time
budget, and turn a crash, timeout or os._exit into a clear message for the one test it hit; the
exercise's remaining tests then run in a fresh process."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from pathlib import Path
from types import SimpleNamespace

from grading import sandbox
from grading.harness import MAX_DATA, Loaded, run_exercise
from labsupport.check import MAX_MESSAGE

EXEC_GRACE = 2.0  # seconds for the harness to report between tests
WALL_FACTOR = 5.0  # wall-clock backstop = 5 x a test's CPU-time limit (+2 s), for code that sleeps or waits
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def close_all_but(keep: set[int]) -> None:
    """Close inherited descriptors (other submissions' pipes, the worker's protocol channel)."""
    for fd in [int(x) for x in os.listdir("/proc/self/fd")] if os.path.isdir("/proc/self/fd") else range(3, 256):
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _death(status: int, limits: SimpleNamespace, cpu: float) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {
            signal.SIGXCPU: f"your code used more than {cpu:.0f} s of CPU time",
            signal.SIGXFSZ: f"your code wrote more than {limits.output_mb} MB (too much output?)",
            signal.SIGKILL: "your code was killed (SIGKILL), most likely for using too much memory",
            signal.SIGSEGV: "your code crashed the interpreter (segmentation fault)",
            signal.SIGABRT: "your code aborted the interpreter (SIGABRT, e.g. a failed allocation)",
        }.get(sig, f"your code was killed by {signal.Signals(sig).name}")
    return f"the process exited with status {os.waitstatus_to_exitcode(status)} (os._exit() in your code?)"


def _exercise_process(loaded: Loaded, ex: dict, pending: list[str], job: dict, wfd: int,
                      limits: SimpleNamespace, cpu: float) -> None:
    try:
        sandbox.die_with_parent()
        os.setsid()
        out = os.open(f"ex-{ex['id']}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0), os.dup2(out, 1), os.dup2(out, 2), os.dup2(wfd, 3)
        close_all_but({3})
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        sandbox.limit_process(limits, cpu)
        if job.get("run_as") and os.geteuid() == 0:
            sandbox.run_as(job["run_as"])
        sandbox.drop_privileges()
        run_exercise(loaded, ex, pending, job["seed"], 3)
    finally:
        os._exit(0)


def _reap(pid: int, pidns: bool) -> int:
    """Kill `pid` and everything it started; return its wait status."""
    try:
        if pidns:
            os.kill(-1, signal.SIGKILL)  # as PID 1: every other process of this submission
        else:
            os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    status = 0
    while True:
        try:
            got, st = os.waitpid(-1 if pidns else pid, 0)
        except ChildProcessError:
            return status
        if got == pid:
            status = st
            if not pidns:
                return status


def _cpu_seconds(pid: int, pidns: bool) -> float | None:
    """CPU time used by the exercise process -- and, inside a PID namespace, by every process the
    student's code started -- from /proc; None where unknown (then wall time is the clock)."""
    total = None
    for p in [x for x in os.listdir("/proc") if x.isdigit() and x != "1"] if pidns else [str(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total = (total or 0.0) + sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            continue
    return total


def _watch(pid: int, r: int, seconds: dict[str, float], limits: SimpleNamespace, end: float,
           pidns: bool, done: dict[str, dict]) -> tuple[str, int, str | None, str | None]:
    """Follow one exercise process until it exits or overruns; return (phase, status, overrun, failure).

    A test's limit is CPU time (so a neighbour's fork bomb slowing the machine costs nobody points), with a
    wall-clock backstop for code that sleeps or waits; the submission's budget `end` is wall time.
    """
    phase, buf, failure = "exec", b"", None

    def arm(limit: float) -> tuple[float, float | None, float]:
        return limit, _cpu_seconds(pid, pidns), time.monotonic()

    limit, cpu0, t0 = arm(limits.test_seconds)
    while True:
        now, cpu = time.monotonic(), _cpu_seconds(pid, pidns)
        used = cpu - cpu0 if cpu is not None and cpu0 is not None else None
        wall = t0 + (WALL_FACTOR * limit + 2 if used is not None else limit)
        overrun = "budget" if now >= end else "cpu" if used is not None and used > limit else \
            "wall" if now >= wall else None
        if overrun:
            return phase, _reap(pid, pidns), overrun, failure
        ready, _, _ = select.select([r], [], [], 0.02)
        data = os.read(r, 1 << 20) if ready else b""
        buf += data
        if len(buf) > MAX_DATA + 4096 and b"\n" not in buf:  # a line longer than any honest report
            failure = "your code wrote garbage into the grader's channel"
            return phase, _reap(pid, pidns), None, failure
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line)  # untrusted: only its shape is used here, the judge reads the data
            except ValueError:
                continue
            if type(msg) is not dict:
                continue
            kind, test = msg.get("t"), msg.get("test")
            if kind == "start" and test in seconds and test not in done:
                phase = test
                limit, cpu0, t0 = arm(seconds[phase])
            elif kind == "done" and test == phase:
                secs = msg.get("seconds")
                done[phase] = {"data": msg.get("data"), "message": str(msg.get("message") or "")[:MAX_MESSAGE],
                               "seconds": float(secs) if type(secs) in (int, float) else 0.0}
                phase = "between"
                limit, cpu0, t0 = arm(EXEC_GRACE)
            elif kind == "ready":
                phase = "between"
                limit, cpu0, t0 = arm(EXEC_GRACE)
            elif kind == "exec_error":
                failure = f"could not run your code: {str(msg.get('message'))[:MAX_MESSAGE]}"
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            if pidns:
                _reap(pid, pidns)  # whatever it left running
            return phase, status, None, failure


def run_tests(loaded: Loaded, ex: dict, job: dict, limits: SimpleNamespace, end: float, pidns: bool) -> dict:
    """Run exercise `ex` in as many exercise processes as crashes require; return its results."""
    done: dict[str, dict] = {}
    pending = list(ex["tests"])
    seconds = {k: loaded.tests[k]["seconds"] or limits.test_seconds for k in pending}
    budget = f"not run: the submission used up its {limits.notebook_seconds:.0f} s time limit"
    while pending:
        r, w = os.pipe()
        cpu = limits.test_seconds + sum(seconds[k] for k in pending)
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _exercise_process(loaded, ex, pending, job, w, limits, cpu)
        os.close(w)
        phase, status, overrun, failure = _watch(pid, r, seconds, limits, end, pidns, done)
        os.close(r)
        slow = {"cpu": "used more than {:.0f} s of CPU time (infinite loop, or far too slow?)",
                "wall": "took far more than {:.0f} s of wall time (sleeping or waiting on something?)"}
        before = len(pending)
        if overrun == "budget":
            failure = budget
        elif phase in seconds and not failure:  # only the running test is lost; the rest get a fresh process
            why = slow[overrun].format(seconds[phase]) if overrun else _death(status, limits, cpu)
            done[phase] = {"message": f"your code {why}" if overrun else why,
                           "seconds": seconds[phase] if overrun else 0.0}
        elif phase == "exec" and not failure:
            failure = (f"your code did not finish defining the exercise: it {slow[overrun].format(limits.test_seconds)}"
                       if overrun else f"could not run your code: {_death(status, limits, cpu)}")
        pending = [k for k in pending if k not in done]
        if pending and (failure or len(pending) == before):  # no progress: do not retry forever
            why = failure or f"no result reported ({_death(status, limits, cpu)})"
            done.update({k: {"message": why, "seconds": 0.0} for k in pending})
            pending = []
    return {"id": ex["id"], "tests": {k: done[k] for k in ex["tests"]}}


