"""Instructor tooling for Transformer Labs: release student notebooks, grade submissions in a sandbox,
report and export (``python -m grading --help``; walkthrough in grading/README.md)."""
