"""Running the labs: ``python -m labsupport run`` (the CLI is in `labsupport.__main__`) executes every solution
notebook headless and prints a summary table (lab, status, seconds, headline numbers recorded with
``labsupport.record``), headed by the profile and scale it ran at."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labsupport import runtime
from labsupport.io import atomic_path
from labsupport.nbtools import execute

REPO = Path(__file__).resolve().parent.parent


@dataclass
class LabResult:
    lab: str
    status: str  # "ok" | "FAILED"
    seconds: float
    numbers: dict = field(default_factory=dict)
    error: str = ""


def find_labs(notebook_dir: Path, only: list[str] | None = None) -> list[Path]:
    labs = sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {s.strip().zfill(2) for s in only if s.strip()}
        unknown = wanted - {p.name[:2] for p in labs}
        if unknown:
            have = ", ".join(p.name[:2] for p in labs)
            raise SystemExit(f"error: no lab numbered {', '.join(sorted(unknown))} in {notebook_dir} (have: {have})")
        labs = [p for p in labs if p.name[:2] in wanted]
    return labs


def _failing_cell(nb, err: Exception) -> str:
    """Name the cell that failed: its index and first source line."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {i} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue', '')[:200]}"
    return f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:200] if str(err).strip() else ''}"


def run_lab(path: Path, profile: str | None, timeout: int, out_dir: Path, scale: str | None = None,
            **env: str | None) -> LabResult:
    """Execute one lab in a fresh kernel. `profile` None leaves the choice to detection; `env` adds (None:
    removes) kernel environment variables."""
    import nbformat  # heavy (~1 s with jsonschema): only running notebooks needs it

    nb = nbformat.read(path, as_version=4)
    # absolute: the kernel runs inside the notebook's folder, not ours
    results = (out_dir / f"{path.stem}.results.json").resolve()
    results.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        execute(nb, path, timeout, **{"LABSUPPORT_PROFILE": profile, "LABSUPPORT_SCALE": scale, **env},
                LABSUPPORT_RESULTS=str(results))
        status, error = "ok", ""
    except Exception as err:  # CellExecutionError, DeadKernelError, CellTimeoutError
        status, error = "FAILED", _failing_cell(nb, err)
    seconds = time.perf_counter() - start
    with atomic_path(out_dir / path.name) as tmp:
        nbformat.write(nb, tmp)
    numbers = json.loads(results.read_text()) if results.exists() else {}
    return LabResult(path.stem, status, seconds, numbers, error)


def format_table(rows: list[LabResult]) -> str:
    header = ("lab", "status", "seconds", "headline numbers")
    body = [(r.lab, r.status, f"{r.seconds:.1f}", ", ".join(f"{k}={v}" for k, v in r.numbers.items())) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row).rstrip() for row in body]
    return "\n".join(lines)


def run_labs(labs: list[Path], profile: str | None, timeout: int, out: Path, scale: str | None = None,
             **env: str | None) -> int:
    """Run `labs` one after another, print each result and the summary table; 1 when any failed."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in labs:
        print(f"[labsupport] {path.name} ...", flush=True)
        res = run_lab(path, profile, timeout, out, scale, **env)
        print(
            f"[labsupport] {path.name}: {res.status} in {res.seconds:.1f}s" + (f" -- {res.error}" if res.error else ""),
            flush=True,
        )
        rows.append(res)
    print(f"\nprofile {profile or 'detected by each lab'}, scale {scale}, device {runtime.get_device()}")
    print(format_table(rows))
    failed = [r for r in rows if r.status != "ok"]
    for r in failed:
        print(f"\n{r.lab} failed at {r.error}", file=sys.stderr)
    return 1 if failed else 0
