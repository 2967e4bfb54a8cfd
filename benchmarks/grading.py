"""Grading throughput: a 30-submission synthetic class of lab 99 (the solution and its mutants, in turn),
smoke profile, hidden tests included. Prints submissions per second per core, with and without the
one-off worker start-up (Python + torch + labsupport + the lab's prelude), by wall clock and by CPU time
(user + sys of this process and every grading process it waited for: the number that means something on a
loaded machine). Target: >= 1 submission/s/core, i.e. <= 1 CPU second per submission.

    .venv/bin/python -m benchmarks.grading [--n 30] [--jobs N]   # not benchmarks/grading.py: it would shadow `grading`
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from grading.grade import collect, grade
from grading.selftest import apply_mutant
from grading.spec import load_spec

# the synthetic lab 99 that tests/grading grades too: the benchmark times the very class the tests check
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "grading" / "fixtures"


def make_class(spec, folder: Path, n: int) -> None:
    solution = nbformat.read(spec.notebook, as_version=4)
    variants = [solution] + [apply_mutant(solution, spec, m) for m in spec.mutants]
    for i in range(n):
        nbformat.write(variants[i % len(variants)], folder / f"student{i:03d}.ipynb")


def cpu_seconds() -> float:
    """user + sys CPU time of this process and of every (grand)child process that has been waited for."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(spec, folder: Path, jobs: int) -> tuple[float, float, list[dict]]:
    start, cpu = time.perf_counter(), cpu_seconds()
    records = grade(spec, collect(folder, spec.lab), hidden=FIXTURES / "hidden", jobs=jobs, progress=False)
    return time.perf_counter() - start, cpu_seconds() - cpu, records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    spec = load_spec(FIXTURES / "specs" / "99_synthetic.toml", FIXTURES / "notebooks")
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        one.mkdir(), many.mkdir()
        make_class(spec, one, 1)
        make_class(spec, many, args.n)
        t1, c1, _ = timed(spec, one, args.jobs)
        tn, cn, records = timed(spec, many, args.jobs)
    assert all(r["status"] == "graded" for r in records), "every synthetic submission should grade"
    full = sum(r["score"] == r["max_score"] for r in records)
    total = args.n / tn / args.jobs
    steady = (args.n - 1) / max(tn - t1, 1e-9) / args.jobs
    print(f"graded {args.n} submissions ({full} with full marks) on {args.jobs} core(s) in {tn:.1f} s; "
          f"start-up ~{t1:.1f} s")
    cpu_each = (cn - c1) / (args.n - 1)
    print(f"throughput: {total:.2f} submissions/s/core including start-up, {steady:.2f} excluding it (wall clock)")
    print(f"CPU time: {cn:.1f} s for {args.n} submissions, start-up ~{c1:.1f} s; {cpu_each:.2f} CPU s per submission "
          f"excluding start-up = {1 / max(cpu_each, 1e-9):.2f} submissions/s/core "
          f"(target >= 1.0: {'met' if cpu_each <= 1.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
