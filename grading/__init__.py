"""Instructor tooling for Transformer Labs: release student notebooks, grade submissions in a sandbox,
report and export (``python -m grading --help``; walkthrough in grading/README.md)."""

import sys

# nbformat imports jsonschema, whose format checkers import rfc3987_syntax when it is installed (jupyter
# brings it): that builds a lark grammar, ~1.5 s of CPU in every grading process (the grader, each notebook
# reader subprocess). nbformat validates with fastjsonschema and checks no "iri" format, so none of them needs it.
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # None: importing it raises ImportError
