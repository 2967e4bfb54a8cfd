"""Reading submissions in a bounded subprocess: everything that parses a student's file -- JSON, nbformat
validation, IPython transforms, ``ast``, extraction, the reference-use scan, similarity's code -- runs in
``python -m grading.parse``, one submission at a time, under a memory cap, a raised recursion limit and a
wall-clock limit per file. A file that crashes, hangs or exhausts it yields "invalid: <reason>" for its
author only; the server is restarted for the next one.

The client (`Parser`) is used by grade.py and similarity.py; files are opened with O_NOFOLLOW and must be
regular files (symlinks were already refused by `collect`, this is the second lock).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import select
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from grading.extract import Template, parse_cells
from grading.sandbox import grading_env, vm_size
from grading.spec import load_spec

MAX_FILE_MB = 50
MEMORY_MB = 2048  # address space the parser may add while reading one file
REFERENCE_MESSAGE = "uses the course's reference implementation"


def read_regular(path: str | os.PathLike, max_bytes: int = MAX_FILE_MB * 2**20) -> bytes:
    """The bytes of a regular file, never following a symlink; OSError/ValueError otherwise."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"larger than {max_bytes >> 20} MB")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(max_bytes + 1)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- reference use


def _aliases(tree: ast.AST, names: dict[str, str]) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in names:
        return ".".join([names[node.id], *reversed(parts)])
    return None


def reference_use(prelude: str, sources: list[str], references: list[str], allow: list[str]) -> str | None:
    """The first graded reference (or labsupport.checks object) the code imports or names, else None."""
    refs = [r.replace(":", ".") for r in references]
    allowed = {a.replace(":", ".") for a in allow}

    def flagged(path: str) -> bool:
        if path in allowed:
            return False
        return path == "labsupport.checks" or path.startswith("labsupport.checks.") or any(
            path == r or path.startswith(r + ".") for r in refs)

    names: dict[str, str] = {}
    try:
        _aliases(ast.parse(prelude), names)
    except SyntaxError:
        pass
    trees = [ast.parse(s) for s in sources]
    for tree in trees:
        _aliases(tree, names)
    for tree in trees:
        for node in ast.walk(tree):
            paths = []
            if isinstance(node, ast.Import):
                paths = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                paths = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, (ast.Attribute, ast.Name)):
                p = _dotted(node, names)
                paths = [p] if p else []
            for p in paths:
                if flagged(p):
                    return f"{REFERENCE_MESSAGE} ({p})"
    return None


# ---------------------------------------------------------------------------------------------- the server


def _read(path: str, template, spec, cfg: dict[str, Any]) -> dict[str, Any]:
    import nbformat  # heavy (~1 s with jsonschema): only the reader subprocess needs it

    raw = read_regular(path)
    sha = hashlib.sha256(raw).hexdigest()
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # NotJSONError, JSONDecodeError, UnicodeDecodeError, ValidationError
        first = (str(err).strip().splitlines() or [""])[0][:160]
        return {"reason": f"not a valid Jupyter notebook ({type(err).__name__}: {first})", "sha256": sha}
    if not isinstance(nb.get("cells"), list):
        return {"reason": "not a valid Jupyter notebook (no list of cells)", "sha256": sha}
    for i, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or not isinstance(cell.get("source"), str):
            return {"reason": f"not a valid Jupyter notebook (cell {i + 1} has no text source)", "sha256": sha}
    cells = parse_cells(nb)
    if cfg["want"] == "code":
        from grading.similarity import student_code, template_lines  # here: similarity imports this module

        given = template_lines(template)
        return {"code": {ex.id: student_code(template, cells, ex, given) for ex in spec.exercises}, "sha256": sha}
    exercises = []
    for ex in spec.exercises:
        tests = [k for k in cfg["tests"] if k.split("/")[0] == ex.id]
        if not tests:
            continue
        got = template.extract(cells, ex)
        reason = got.reason
        if not reason:
            reason = reference_use(template.prelude, [c.source for c in got.chunks if c.student],
                                   cfg["references"].get(ex.id, []), cfg["allow"].get(ex.id, []))
        exercises.append({"id": ex.id, "chunks": [vars(c) for c in got.chunks], "reason": reason, "tests": tests})
    return {"exercises": exercises, "warnings": template.locked_cell_edits(nb), "sha256": sha}


def serve() -> int:
    """The subprocess: a config line, then one path per line in, one JSON result per line out."""
    import resource  # POSIX only, here so that importing grading on Windows reaches grade's one-line WSL2 message

    cfg = json.loads(sys.stdin.readline())
    spec = load_spec(cfg["spec"], cfg["notebooks"])
    template = Template(spec)
    if sys.platform.startswith("linux"):
        limit = vm_size() + MEMORY_MB * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(20000)
    threading.stack_size(512 * 2**20)  # deep but finite recursion in ast and the transforms
    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        box: dict[str, Any] = {}
        t = threading.Thread(target=_guarded, args=(json.loads(line), template, spec, cfg, box))
        t.start()
        t.join()
        out.write(json.dumps(box.get("r", {"reason": "the notebook could not be read"})) + "\n")
        out.flush()
    return 0


def _guarded(path: str, template, spec, cfg: dict[str, Any], box: dict[str, Any]) -> None:
    try:
        box["r"] = _read(path, template, spec, cfg)
    except RecursionError:
        box["r"] = {"reason": "the notebook nests code too deeply to read (RecursionError)"}
    except MemoryError:
        box["r"] = {"reason": "reading the notebook ran out of memory"}
    except (OSError, ValueError) as err:
        box["r"] = {"reason": f"cannot read the submission ({type(err).__name__}: {str(err).split(':')[0][:80]})"}
    except Exception as err:
        box["r"] = {"reason": f"the notebook could not be read ({type(err).__name__})"}


class Parser:
    """Client: reads submissions through the bounded server, restarting it after a failure."""

    def __init__(self, spec, tests: list[str], references: dict[str, list[str]], allow: dict[str, list[str]],
                 want: str = "jobs", seconds: float | None = None):
        self.cfg = {"spec": str(spec.path), "notebooks": str(spec.notebook.parent.absolute()), "tests": tests,
                    "references": references, "allow": allow, "want": want}
        self.seconds, self.proc = spec.limits.parse_seconds if seconds is None else seconds, None

    def _start(self) -> None:
        env = grading_env("smoke")  # its PYTHONPATH finds grading when it is not installed; the cwd is /, never
        # a folder of submissions (-m puts the cwd on sys.path)
        self.proc = subprocess.Popen([sys.executable, "-m", "grading.parse"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/")
        self.proc.stdin.write((json.dumps(self.cfg) + "\n").encode())
        self.proc.stdin.flush()
        self.buf = b""

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def read(self, path: Path) -> dict[str, Any]:
        """{"exercises", "warnings", "sha256"} (or {"code"}), or {"reason": why it cannot be graded}."""
        if self.proc is None:
            self._start()
            if self._line(60.0) != "ready":  # Python, nbformat, IPython and the solution template, once
                self.close()
                raise SystemExit("error: the notebook reader (python -m grading.parse) did not start")
        try:
            self.proc.stdin.write((json.dumps(str(Path(path).absolute())) + "\n").encode())  # it runs in /
            self.proc.stdin.flush()
        except OSError:
            self.close()
            return {"reason": "the notebook could not be read (the reader crashed)"}
        got = self._line(self.seconds)
        if isinstance(got, str):
            self.close()
            return {"reason": "reading the notebook crashed the reader (out of memory?)" if got == "crashed" else
                    f"reading the notebook took more than {self.seconds:.0f} s"}
        return got

    def _line(self, seconds: float) -> Any:
        """The server's next JSON line, or "crashed" / "timeout"."""
        end = time.monotonic() + seconds
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            chunk = os.read(fd, 1 << 20) if ready else b""
            if not chunk:
                return "crashed" if left > 0 else "timeout"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def __enter__(self) -> Parser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(serve())
