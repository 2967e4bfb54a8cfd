"""``python -m grading <command>`` (also installed as ``labgrade``): release, check, grade, report,
similarity, gradescope, selftest. Walkthrough: grading/README.md."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from grading.spec import PACKAGE, SPECS_DIR, SpecError, find_spec, find_specs, notebooks_dir


def _labs(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def _hidden(value: Path | None) -> Path | None:
    """--hidden, else $LABGRADE_HIDDEN, else grading/hidden/ of a checkout when it exists (a private overlay)."""
    if value is not None:
        if not value.is_dir():
            raise SystemExit(f"error: --hidden {value} is not a folder")
        return value
    env = os.environ.get("LABGRADE_HIDDEN")
    if env:
        return Path(env)
    default = PACKAGE / "hidden"
    return default if default.is_dir() else None


def cmd_release(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.release import release

    notebooks = notebooks_dir(args.notebooks)
    student = notebooks / "student"
    if args.strip_answers and (args.out is None or args.out.resolve() == student.resolve()):
        print("--strip-answers writes graded-questions notebooks: give them their own --out folder "
              "(notebooks/student/ keeps the answers for self-study)")
        return 2
    for path, changed in release(notebooks, args.out or student, _labs(args.labs), answers=not args.strip_answers):
        print(f"{'wrote    ' if changed else 'unchanged'} {path}")
    return 0


def cmd_check(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.grade import Submission, grade

    lab = args.exercise.split(".")[0].zfill(2)
    spec = find_spec(lab, args.specs, args.notebooks)
    ex = spec.exercise(args.exercise)
    public = [t for t in ex.tests if t.public]
    if not public:
        raise SystemExit(f"error: exercise {ex.id} has no public check")
    notebook = args.notebook or spec.notebook.parent / "student" / spec.notebook.name
    if not notebook.is_file():
        raise SystemExit(f"error: {notebook} not found; pass your notebook: python -m grading check {ex.id} PATH")
    rec = grade(spec, [Submission("you", notebook)], progress=False, public_only=True,
                only={t.key for t in public})[0]
    ok = True
    for t in (t for e in rec["exercises"] for t in e["tests"]):
        ok &= t["passed"]
        if t["passed"]:
            print(f"PASS  exercise {ex.id} ({ex.title}): {t['message']}")
        else:
            print(f"FAIL  exercise {ex.id} ({ex.title}): {t['message']}")
            print(f"      hint: {t['hint']}") if t.get("hint") else None
    return 0 if ok else 1


def cmd_grade(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.grade import collect, grade

    spec = find_spec(args.lab, args.specs, args.notebooks)
    out = args.out or Path("build/grading") / spec.stem
    subs = collect(args.submissions, spec.lab)
    if not subs:
        raise SystemExit(f"error: no submissions (.ipynb files or folders) in {args.submissions}")
    records = grade(spec, subs, out=out, hidden=_hidden(args.hidden), jobs=args.jobs, force=args.force,
                    isolation=args.isolation, public_only=args.public_only, mask=[args.submissions])
    if records and records[0].get("isolation"):
        for key, value in records[0]["isolation"].items():
            print(f"[labgrade] {key}: {value}")
    for r in records:
        extra = f"  ({r['status']}: {r['reason']})" if r["status"] != "graded" else ""
        print(f"{r['student']:<24} {r['score']:>6g} / {r['max_score']:g}{extra}")
    print(f"[labgrade] {len(records)} result(s) in {out}/; next: python -m grading report {out}")
    return 0


def cmd_report(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.report import report
    from grading.spec import load_points_override

    overrides = load_points_override(args.points_override) if args.points_override else None
    paths = report(args.results, args.out, overrides, args.void or [])
    for name, path in paths.items():
        print(f"[labgrade] {name}: {path}")
    print(f"[labgrade] feedback: {paths['gradebook'].parent / 'feedback'}/<student>.html")
    return 0


def cmd_similarity(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.grade import collect
    from grading.similarity import similarity, write

    spec = find_spec(args.lab, args.specs, args.notebooks)
    df = similarity(spec, collect(args.submissions, spec.lab), top=args.top)
    print(df.to_string(index=False) if len(df) else "no pair of submissions with comparable code")
    if args.out:
        write(df, args.out)
        print(f"[labgrade] wrote {args.out}")
    return 0


def cmd_gradescope(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.gradescope import bundle

    spec = find_spec(args.lab, args.specs, args.notebooks)
    names = bundle(spec, args.out, _hidden(args.hidden))
    print(f"[labgrade] wrote {args.out} ({len(names)} files); upload it as the Gradescope autograder")
    return 0


def cmd_gradescope_run(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.gradescope import run

    out = run(find_spec(args.lab, args.specs, args.notebooks), args.submission, args.results, args.hidden)
    print(out["output"])
    return 0


def cmd_selftest(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.selftest import selftest

    failed = False
    for spec in find_specs(args.specs, args.notebooks, _labs(args.labs)):
        res = selftest(spec, _hidden(args.hidden), jobs=args.jobs, progress=not args.quiet)
        print("\n".join(res.lines))
        for f in res.failures:
            print(f"  FAIL {f}")
        failed |= bool(res.failures)
        print(f"  {'FAILED' if res.failures else 'ok'}")
    return 1 if failed else 0


def cmd_spec_init(args) -> int:
    # here, not at the top: a subcommand's modules import labsupport and torch (~2 s), --help stays instant
    from grading.release import solution_notebooks
    from grading.selftest import skeleton

    print(skeleton(solution_notebooks(notebooks_dir(args.notebooks), [args.lab])[0]))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--specs", type=Path, default=SPECS_DIR, help="folder of NN_topic.toml specs")
    common.add_argument("--notebooks", type=Path, help="folder of solution notebooks (default: notebooks/ of the "
                        "course repository this grader runs from, else ./notebooks)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help):
        s = sub.add_parser(name, parents=[common], help=help, description=help)
        s.set_defaults(func=func)
        return s

    s = add("release", cmd_release, "solution notebooks -> student notebooks (solutions stubbed, outputs cleared)")
    s.add_argument("--labs", help="comma-separated lab numbers (default: all)")
    s.add_argument("--out", type=Path, help="default: the student/ folder inside the notebooks folder")
    s.add_argument("--strip-answers", action="store_true",
                   help="also replace the <details> answers of the questions by YOUR ANSWER HERE (to grade them)")
    s = add("check", cmd_check, "run the public check of one exercise against your notebook")
    s.add_argument("exercise", help='exercise id, e.g. "01.2"')
    s.add_argument("notebook", type=Path, nargs="?", help="your notebook (default notebooks/student/NN_*.ipynb)")
    s = add("grade", cmd_grade, "grade a folder of submissions (one .ipynb or one folder per student)")
    s.add_argument("submissions", type=Path)
    s.add_argument("--lab", required=True)
    s.add_argument("--hidden", type=Path, help="private hidden-tests overlay (holds NN_topic/test_*.py)")
    s.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    s.add_argument("--force", action="store_true", help="re-grade submissions that already have a result")
    s.add_argument("--out", type=Path, help="results folder (default build/grading/NN_topic)")
    s.add_argument("--public-only", action="store_true", help="grade with the public checks only")
    s.add_argument("--isolation", choices=("auto", "namespaces", "bwrap", "none"), default="auto")
    s = add("report", cmd_report, "gradebook CSV, feedback HTML and class report from stored results")
    s.add_argument("results", type=Path)
    s.add_argument("--points-override", type=Path, help='TOML/JSON {"01.2/public" = 3, ...}')
    s.add_argument("--void", action="append", metavar="TEST", help='drop a test, e.g. "01.2/hidden_edge"')
    s.add_argument("--out", type=Path, help="default RESULTS/report")
    s = add("similarity", cmd_similarity, "most similar pairs of students' exercise code")
    s.add_argument("submissions", type=Path)
    s.add_argument("--lab", required=True)
    s.add_argument("--top", type=int, default=20)
    s.add_argument("--out", type=Path, help="also write the pairs as CSV")
    s = add("gradescope", cmd_gradescope, "build a Gradescope autograder zip for one lab")
    s.add_argument("--lab", required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--hidden", type=Path)
    s = add("gradescope-run", cmd_gradescope_run, "(inside the Gradescope bundle) grade one submission folder")
    s.add_argument("--lab", required=True)
    s.add_argument("--submission", type=Path, required=True)
    s.add_argument("--results", type=Path, required=True)
    s.add_argument("--hidden", type=Path)
    s = add("selftest", cmd_selftest, "solution full marks over 3 seeds, student notebook 0, every mutant loses points")
    s.add_argument("--labs")
    s.add_argument("--hidden", type=Path)
    s.add_argument("--jobs", type=int, default=2)
    s.add_argument("--quiet", action="store_true")
    s = add("spec-init", cmd_spec_init, "print a starting spec for a solution notebook")
    s.add_argument("lab")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, KeyError, ValueError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
