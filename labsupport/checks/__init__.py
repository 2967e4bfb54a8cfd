"""Public self-checks, one module per lab (``labNN.py``); each registers with ``check.exercise``."""
