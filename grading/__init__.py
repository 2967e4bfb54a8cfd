"""Instructor tooling for Transformer Labs: release student notebooks, grade submissions in a sandbox,
report and export (``python -m grading --help``; walkthrough in grading/README.md)."""

import sys

# jsonschema (nbformat's validator) imports rfc3987_syntax, where installed, for "iri" formats that notebook
# validation never checks; it builds a grammar at import: ~1.3 CPU s in the grader and in every notebook reader
sys.modules.setdefault("rfc3987_syntax", None)
