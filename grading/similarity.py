"""Pairwise similarity of students' exercise code, to point a human at pairs worth a closer look.

Each student's code for an exercise is what the grader would run (extract.py), minus every line that
is also in the released template (signatures, docstrings, given code). It is tokenized with
``tokenize`` and normalised -- identifiers, numbers and strings become placeholders, comments vanish --
so renaming variables or reformatting does not hide a copy. Similarity is the Jaccard index of the
token 5-grams; a pair's score is the mean over exercises both students attempted. The course's graded
reference implementations take part as the pseudo-student "(course reference)", so code copied from them
is listed too. Submissions are read by the bounded reader (parse.py): a hostile file costs only its author.
"""

from __future__ import annotations

import ast
import inspect
import io
import itertools
import keyword
import tokenize
from pathlib import Path

from grading.extract import Template
from grading.grade import Submission
from grading.judge import load_checks
from grading.parse import Parser
from labsupport.check import get_exercise, resolve

REFERENCE = "(course reference)"

NGRAM = 5
MIN_TOKENS = 8  # shorter code (a stub, a one-liner) says nothing about copying
SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


def normalize(code: str) -> list[str]:
    """Tokens with identifiers, literals and layout normalised away (keywords and operators kept)."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in SKIP:
                continue
            if tok.type == tokenize.NAME:
                out.append(tok.string if keyword.iskeyword(tok.string) else "ID")
            elif tok.type == tokenize.NUMBER:
                out.append("NUM")
            elif tok.type == tokenize.STRING:
                out.append("STR")
            elif tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
                out.append(tokenize.tok_name[tok.type])
            else:
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code.split()
    return out


def shingles(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i: i + n]) for i in range(max(0, len(tokens) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def template_lines(template: Template) -> set[str]:
    return {line.strip() for c in template.released.cells if c.cell_type == "code"
            for line in c.source.splitlines() if line.strip()}


def student_code(template: Template, cells, ex, given: set[str]) -> str:
    got = template.extract(cells, ex)
    lines = [line for c in got.chunks if c.student for line in c.source.splitlines()]
    return "\n".join(line for line in lines if line.strip() and line.strip() not in given)


def reference_grams(spec) -> dict[str, set]:
    """Shingles of the graded references' source, per exercise (those of its public checks)."""
    extra: dict[str, str] = {}
    if spec.checks:  # the spec's checks file: module "labgrade_checks"; its functions' source by name
        text = spec.checks.read_text()
        load_checks(text)
        extra = {n.name: ast.get_source_segment(text, n) or "" for n in ast.parse(text).body
                 if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    out = {}
    for ex in spec.exercises:
        sources = []
        for t in ex.tests:
            try:
                refs = get_exercise(t.public).reference or () if t.public else ()
                sources += [extra.get(p.partition(":")[2], "") if p.startswith("labgrade_checks:")
                            else inspect.getsource(resolve(p)) for p in refs]
            except (KeyError, OSError, TypeError, ImportError, AttributeError):
                continue
        tokens = normalize("\n".join(sources))
        if len(tokens) >= MIN_TOKENS:
            out[ex.id] = shingles(tokens)
    return out


def similarity(spec, submissions: list[Submission], top: int = 20):
    """DataFrame of student pairs (most similar first) with one column per exercise."""
    import pandas as pd  # heavy (~1 s): only the table of pairs needs it

    grams: dict[str, dict[str, set]] = {REFERENCE: reference_grams(spec)}
    with Parser(spec, [], {}, {}, want="code") as parser:
        for sub in submissions:
            got = parser.read(sub.path) if sub.path and not sub.reason else {}
            if "code" not in got:
                continue
            grams[sub.key] = {}
            for ex in spec.exercises:
                tokens = normalize(got["code"].get(ex.id, ""))
                if len(tokens) >= MIN_TOKENS:
                    grams[sub.key][ex.id] = shingles(tokens)
    rows = []
    for a, b in itertools.combinations(sorted(grams), 2):
        row = {"student_a": a, "student_b": b}
        scores = []
        for ex in spec.exercises:
            if ex.id in grams[a] and ex.id in grams[b]:
                row[ex.id] = round(jaccard(grams[a][ex.id], grams[b][ex.id]), 3)
                scores.append(row[ex.id])
        if scores:
            row["similarity"] = round(sum(scores) / len(scores), 3)
            row["exercises"] = len(scores)
            rows.append(row)
    cols = ["student_a", "student_b", "similarity", "exercises"] + [ex.id for ex in spec.exercises]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["similarity", "student_a", "student_b"], ascending=[False, True, True]).head(top)


def write(df, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
