"""Grade submitted notebooks: collect them, extract each exercise, run the tests in the sandboxed
grading worker (worker.py), and write one JSON result per submission.

The per-test results (passed + message) are the record; points are attached from the spec here and
can be recomputed later by report.py without running anything again.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grading import sandbox
from grading.extract import Template, parse_cells, read_submission
from grading.spec import REPO, LabSpec

SCHEMA = 1


@dataclass
class Submission:
    key: str  # the student's id: file stem or folder name
    path: Path | None
    reason: str | None = None  # why it cannot be graded at all
    warnings: list[str] = field(default_factory=list)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "submission"


def folder_submission(folder: Path, lab: str, key: str | None = None) -> Submission:
    """One student's folder: the notebook named like the lab (NN_*.ipynb) wins, else the first one."""
    nbs = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    key = key or _safe(folder.name)
    if not nbs:
        return Submission(key, None, "no .ipynb notebook in the submission folder")
    best = [p for p in nbs if p.name.startswith(f"{lab}_")] or nbs
    sub = Submission(key, best[0])
    if len(nbs) > 1:
        sub.warnings.append(f"{len(nbs)} notebooks submitted; graded {best[0].relative_to(folder)}")
    return sub


def collect(folder: Path, lab: str) -> list[Submission]:
    """One .ipynb per student, or a folder per student (its notebook may have any name)."""
    folder = Path(folder)
    if folder.is_file():
        return [Submission(_safe(folder.stem), folder)]
    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder of submissions")
    subs = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            subs.append(Submission(_safe(entry.stem), entry))
        elif entry.is_dir():
            subs.append(folder_submission(entry, lab))
    keys = [s.key for s in subs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise SystemExit(f"error: two submissions map to the same student id: {', '.join(sorted(dupes))}")
    return subs


def hidden_sources(spec: LabSpec, overlay: Path | None) -> dict[str, str]:
    files = sorted({t.hidden.split("::")[0] for t in spec.tests if t.hidden})
    folder = spec.hidden_dir(overlay)
    if files and (folder is None or not folder.is_dir()):
        raise SystemExit(f"error: lab {spec.lab} has hidden tests but {folder or 'no --hidden DIR'} holds none; "
                         f"pass --hidden DIR (the private overlay holding {spec.stem}/) or --public-only")
    return {f: (folder / f).read_text() for f in files}


def _hidden_params(sources: dict[str, str]) -> dict[str, set[str]]:
    params = {}
    for fname, src in sources.items():
        for node in ast.parse(src).body:
            if isinstance(node, ast.FunctionDef):
                params[f"{fname}::{node.name}"] = {a.arg for a in node.args.args + node.args.kwonlyargs}
    return params


def _masks(paths: list[Path | None]) -> list[str]:
    """Folders to hide from graded code, minus any that hold what the grader itself needs."""
    needed = [Path(sys.prefix).resolve(), REPO, Path(tempfile.gettempdir()).resolve()]
    out = []
    for p in paths:
        if p is None or not Path(p).is_dir():
            continue
        p = Path(p).resolve()
        if not any(n == p or p in n.parents for n in needed):
            out.append(str(p))
    return out


class Grader:
    """Everything needed to grade one lab: spec, solution template, tests, worker config."""

    def __init__(self, spec: LabSpec, hidden: Path | None = None, public_only: bool = False,
                 only: set[str] | None = None):
        self.spec, self.template = spec, Template(spec)
        self.tests = [t for t in spec.tests if (t.public or not public_only) and (only is None or t.key in only)]
        self.hidden = {} if public_only or not any(t.hidden for t in self.tests) else hidden_sources(spec, hidden)
        self.params = _hidden_params(self.hidden)
        self.fingerprint = spec.fingerprint(spec.hidden_dir(hidden)) + ("-public" if public_only else "")
        self.overlay = hidden

    def config(self, mode: str, jobs: int, masks: list[str]) -> dict[str, Any]:
        spec, keys = self.spec, {t.key for t in self.tests}
        deps = {}
        for ex in spec.exercises:
            if ex.depends and any(t.exercise == ex.id for t in self.tests):
                chunks = [c for d in ex.depends for c in self.template.solution_chunks(spec.exercise(d))]
                names = [n for d in ex.depends for n in spec.exercise(d).defines]
                deps[ex.id] = {"chunks": [vars(c) for c in chunks], "names": names}
        return {
            "lab": spec.lab, "mode": mode, "jobs": jobs, "masks": masks, "limits": vars(spec.limits),
            "run_as": os.environ.get("LABGRADE_RUN_AS", "") if mode != "namespaces" else "",
            "prelude": self.template.prelude, "setup": spec.setup, "checks": str(spec.checks or ""),
            "hidden": self.hidden, "deps": deps,
            "tests": {t.key: {"public": t.public, "hidden": t.hidden, "args": list(t.args), "options": t.options,
                              "seconds": t.seconds} for t in self.tests if t.key in keys},
        }

    def job(self, sub: Submission, nb, seed: int) -> dict[str, Any]:
        cells = parse_cells(nb)
        exercises = []
        for ex in self.spec.exercises:
            tests = [t for t in self.tests if t.exercise == ex.id]
            if not tests:
                continue
            roots = {p for t in tests if t.hidden for p in self.params.get(t.hidden, ())}
            got = self.template.extract(cells, ex, roots)
            exercises.append({"id": ex.id, "chunks": [vars(c) for c in got.chunks], "reason": got.reason,
                              "tests": [t.key for t in tests]})
        return {"key": sub.key, "seed": seed, "exercises": exercises}


def _record(grader: Grader, sub: Submission, seed: int, isolation: dict, outcome: dict | None,
            reason: str | None, warnings: list[str], checks: dict | None = None) -> dict[str, Any]:
    spec, exercises = grader.spec, []
    status = "invalid" if reason else ("error" if outcome and outcome.get("error") else "graded")
    for ex in spec.exercises:
        tests = []
        for t in (t for t in grader.tests if t.exercise == ex.id):
            got = (outcome or {}).get("exercises", {}).get(ex.id, {}).get(t.key)
            if got is None:
                died = "not graded: the grading process for this submission died"
                if (outcome or {}).get("killed"):
                    died = f"not run: the submission used up its {spec.limits.notebook_seconds:g} s time limit"
                got = {"passed": False, "seconds": 0.0, "message": reason or (outcome or {}).get("error") or died}
            hint = (checks or {}).get(t.public, {}).get("hint", "") if t.public and not got["passed"] else ""
            tests.append({"key": t.key, "name": t.name, "kind": t.kind, "passed": bool(got["passed"]),
                          "message": got["message"], "hint": hint, "seconds": got["seconds"],
                          "max_points": t.points, "points": t.points if got["passed"] else 0.0})
        if tests:
            exercises.append({"id": ex.id, "title": ex.title, "tests": tests, "score": sum(t["points"] for t in tests),
                              "max_score": sum(t["max_points"] for t in tests)})
    sha = hashlib.sha256(sub.path.read_bytes()).hexdigest() if sub.path and sub.path.is_file() else None
    return {
        "schema": SCHEMA, "student": sub.key, "lab": spec.lab, "title": spec.title, "seed": seed,
        "submission": str(sub.path) if sub.path else None, "sha256": sha, "fingerprint": grader.fingerprint,
        "graded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "status": status,
        "reason": reason or (outcome or {}).get("error"), "isolation": isolation, "warnings": warnings,
        "exercises": exercises, "score": sum(e["score"] for e in exercises),
        "max_score": sum(e["max_score"] for e in exercises),
    }


def _temp_log() -> Path:
    fd, name = tempfile.mkstemp(prefix="labgrade-", suffix=".log")
    os.close(fd)
    return Path(name)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_worker(grader: Grader, jobs: list[dict], n: int, masks: list[str], isolation: str,
               log: Path) -> Iterator[dict]:
    """Start the grading worker, feed it `jobs`, yield its events ("ready" first, then results)."""
    if not hasattr(os, "fork"):
        raise SystemExit("error: grading needs fork() (Linux or macOS); on Windows run it inside WSL2")
    mode, note = sandbox.choose_mode(isolation)
    cmd = [sys.executable, "-m", "grading.worker"]
    if mode == "bwrap":
        cmd = sandbox.bwrap_prefix([Path(m) for m in masks]) + cmd
    env = sandbox.grading_env(grader.spec.profile)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    payload = "\n".join(json.dumps(x) for x in [grader.config(mode, n, masks), *jobs]) + "\n"
    with open(log, "w") as err, tempfile.TemporaryFile("w+") as inp:
        inp.write(payload)
        inp.seek(0)
        proc = subprocess.Popen(cmd, stdin=inp, stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=REPO)
        try:
            for line in proc.stdout:
                event = json.loads(line)
                if event["t"] == "ready":
                    event["isolation"] = sandbox.describe(mode, note, grader.spec.limits, event["cgroups"],
                                                          event.get("run_as", "")).as_dict()
                if event["t"] == "fatal":
                    raise SystemExit(f"error: the grading worker could not load lab {grader.spec.lab}: "
                                     f"{event['message']}\n{event.get('trace', '')}")
                yield event
        finally:
            proc.kill() if proc.poll() is None else None
            proc.wait()
    if proc.returncode not in (0, -9):
        tail = log.read_text()[-2000:]
        raise SystemExit(f"error: the grading worker exited with status {proc.returncode} (log: {log}):\n{tail}")


def grade(spec: LabSpec, submissions: list[Submission], out: Path | None = None, hidden: Path | None = None,
          jobs: int = 1, force: bool = False, progress: bool = True, isolation: str = "auto",
          public_only: bool = False, seeds: dict[str, int] | None = None, only: set[str] | None = None,
          mask: list[Path] | None = None) -> list[dict[str, Any]]:
    """Grade `submissions`; with `out`, write out/<student>.json and skip those already graded."""
    from tqdm.auto import tqdm

    grader = Grader(spec, hidden, public_only, only)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)  # exists before the sandbox masks it
    results: dict[str, dict] = {}
    todo: list[tuple[Submission, Any]] = []
    for sub in submissions:
        seed = (seeds or {}).get(sub.key, spec.seed)
        prior = out / f"{sub.key}.json" if out else None
        if prior and prior.exists() and not force and sub.path and sub.path.is_file():
            old = json.loads(prior.read_text())
            same = old.get("sha256") == hashlib.sha256(sub.path.read_bytes()).hexdigest()
            if same and old.get("fingerprint") == grader.fingerprint and old.get("status") != "error":
                results[sub.key] = old
                continue
        nb, reason = read_submission(sub.path) if sub.path else (None, sub.reason)
        if nb is None:
            results[sub.key] = _record(grader, sub, seed, {}, None, reason, sub.warnings)
            if out:
                write_json(out / f"{sub.key}.json", results[sub.key])
        else:
            todo.append((sub, nb))
    if todo:
        masks = _masks([hidden, out, spec.notebook.parent, *(mask or []), *sorted({s.path.parent for s, _ in todo})])
        job_list = [grader.job(s, nb, (seeds or {}).get(s.key, spec.seed)) for s, nb in todo]
        by_key = {s.key: (s, nb) for s, nb in todo}
        log = (out / "worker.log") if out else _temp_log()
        isolation_info: dict = {}
        checks: dict = {}
        bar = tqdm(total=len(todo), desc=f"grading lab {spec.lab}", unit="nb", disable=not progress)
        for event in run_worker(grader, job_list, max(1, jobs), masks, isolation, log):
            if event["t"] == "ready":
                isolation_info, checks = event["isolation"], event["checks"]
            elif event["t"] == "result":
                sub, nb = by_key[event["key"]]
                warnings = sub.warnings + grader.template.locked_cell_edits(nb)
                rec = _record(grader, sub, (seeds or {}).get(sub.key, spec.seed), isolation_info, event, None,
                              warnings, checks)
                results[sub.key] = rec
                if out:
                    write_json(out / f"{sub.key}.json", rec)
                bar.update(1)
        if not out:
            log.unlink()  # kept (and named in the error) only when the worker failed
        bar.close()
    return [results[s.key] for s in submissions if s.key in results]
