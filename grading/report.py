"""Reports from stored results: gradebook CSV, per-submission JSON, per-student feedback HTML and a class
report with plots. Points come from the stored per-test results (passed or not), so changing a test's
points or voiding it re-scores everyone without executing anything again."""

from __future__ import annotations

import base64
import copy
import io
import json
import statistics
from pathlib import Path
from typing import Any

import jinja2

from grading.grade import SCHEMA, write_json

TEMPLATES = Path(__file__).resolve().parent / "templates"


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every grading result (one JSON per submission) in `folder`, sorted by student."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("schema") == SCHEMA and "exercises" in rec:
            records.append(rec)
    if not records:
        raise SystemExit(f"error: no grading results in {folder}; run `python -m grading grade ... --out {folder}`")
    labs = {r["lab"] for r in records}
    if len(labs) > 1:
        raise SystemExit(f"error: {folder} mixes results of labs {', '.join(sorted(labs))}; report one lab at a time")
    return records


def all_test_keys(records: list[dict]) -> list[str]:
    keys: list[str] = []
    for r in records:
        for ex in r["exercises"]:
            keys += [t["key"] for t in ex["tests"] if t["key"] not in keys]
    return keys


def rescore(record: dict, overrides: dict[str, float] | None = None, void: set[str] = frozenset()) -> dict:
    """A copy of `record` with points recomputed from pass/fail, new points and voided tests."""
    rec = copy.deepcopy(record)
    for ex in rec["exercises"]:
        for t in ex["tests"]:
            t["max_points"] = (overrides or {}).get(t["key"], t["max_points"])
            t["voided"] = t["key"] in void
            t["points"] = t["max_points"] if t["passed"] and not t["voided"] else 0.0
        live = [t for t in ex["tests"] if not t["voided"]]
        ex["score"], ex["max_score"] = sum(t["points"] for t in live), sum(t["max_points"] for t in live)
    rec["score"] = sum(ex["score"] for ex in rec["exercises"])
    rec["max_score"] = sum(ex["max_score"] for ex in rec["exercises"])
    rec["percent"] = 100.0 * rec["score"] / rec["max_score"] if rec["max_score"] else 0.0
    return rec


def gradebook(records: list[dict]):
    """One row per student: totals, one column per exercise and per test (LMS-importable CSV)."""
    import pandas as pd  # heavy (~1 s): only the gradebook needs it

    rows = []
    for r in records:
        row = {"student": r["student"], "score": r["score"], "max_score": r["max_score"],
               "percent": round(r["percent"], 2), "status": r["status"]}
        row.update({f"ex {ex['id']}": ex["score"] for ex in r["exercises"]})
        row.update({t["key"]: t["points"] for ex in r["exercises"] for t in ex["tests"] if not t["voided"]})
        rows.append(row)
    return pd.DataFrame(rows)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def per_test_stats(records: list[dict]) -> list[dict[str, Any]]:
    """Pass rate per test over gradable submissions; all-pass / all-fail tests flagged as suspect."""
    graded = [r for r in records if r["status"] == "graded"]
    stats = []
    for key in all_test_keys(records):
        runs = [t for r in graded for ex in r["exercises"] for t in ex["tests"] if t["key"] == key]
        if not runs or runs[0]["voided"]:
            continue
        rate = sum(t["passed"] for t in runs) / len(runs)
        flag = ""
        if len(runs) >= 2 and rate == 0:
            flag = "suspect: nobody passed (broken test or unclear task?)"
        elif len(runs) >= 2 and rate == 1:
            flag = "suspect: everybody passed (test too weak?)"
        stats.append({"key": key, "kind": runs[0]["kind"], "points": runs[0]["max_points"], "rate": rate,
                      "flag": flag})
    return stats


def _plots(records: list[dict], stats: list[dict]) -> tuple[str, str]:
    import matplotlib  # heavy (~1 s): only the report's plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display on a grading server

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([r["percent"] for r in records if r["status"] == "graded"], bins=10, range=(0, 100), color="#4a7ab5")
    ax.set(xlabel="score (%)", ylabel="submissions", title="Score distribution")
    hist = _png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.35 * len(stats))))
    colors = ["#c0392b" if s["flag"] else "#4a7ab5" for s in stats]
    ax.barh([s["key"] for s in stats], [100 * s["rate"] for s in stats], color=colors)
    ax.invert_yaxis()
    ax.set(xlabel="pass rate (%)", xlim=(0, 100), title="Pass rate per test (red: suspect)")
    rates = _png(fig)
    plt.close(fig)
    return hist, rates


def report(results: Path, out: Path | None = None, overrides: dict[str, float] | None = None,
           void: list[str] = ()) -> dict[str, Path]:
    """Write gradebook.csv, json/, feedback/ and class_report.html into `out` (default results/report)."""
    raw = load_results(results)
    known = set(all_test_keys(raw))
    unknown = (set(void) | set(overrides or {})) - known
    if unknown:
        raise SystemExit(f"error: unknown test key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    records = [rescore(r, overrides, set(void)) for r in raw]
    out = Path(out or Path(results) / "report")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    paths = {"gradebook": out / "gradebook.csv", "class_report": out / "class_report.html"}
    out.mkdir(parents=True, exist_ok=True)
    gradebook(records).to_csv(paths["gradebook"], index=False)
    feedback = env.get_template("feedback.html.j2")
    for r in records:
        summary = {k: r[k] for k in ("student", "lab", "score", "max_score", "percent", "status", "reason",
                                     "warnings", "graded_at")}
        summary["tests"] = {t["key"]: {k: t[k] for k in ("passed", "points", "max_points", "voided", "message")}
                            for ex in r["exercises"] for t in ex["tests"]}
        write_json(out / "json" / f"{r['student']}.json", summary)
        (out / "feedback").mkdir(exist_ok=True)
        (out / "feedback" / f"{r['student']}.html").write_text(feedback.render(r=r))
    stats = per_test_stats(records)
    hist, rates = _plots(records, stats)
    percents = [r["percent"] for r in records if r["status"] == "graded"] or [0.0]
    count = {s: sum(r["status"] == s for r in records) for s in ("graded", "invalid", "error")}
    html = env.get_template("class_report.html.j2").render(
        lab=records[0]["lab"], title=records[0].get("title", ""), n=len(records), max_score=records[0]["max_score"],
        n_graded=count["graded"], n_invalid=count["invalid"], n_error=count["error"], mean=statistics.fmean(percents),
        median=statistics.median(percents), histogram=hist, pass_rates=rates, tests=stats,
        problems=[r for r in records if r["status"] != "graded"], voided=sorted(void), overrides=overrides or {},
        isolation=next((r["isolation"] for r in records if r.get("isolation")), {}),
    )
    paths["class_report"].write_text(html)
    return paths
