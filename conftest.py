"""Root pytest configuration: tests and nbval run in the `smoke` profile with no network and no display."""

import os

os.environ.setdefault("LABSUPPORT_PROFILE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# busy-waiting OpenMP threads make torch crawl when cores are shared (xdist workers, notebook kernels)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one xdist worker per core: a second torch thread per worker only oversubscribes the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--rehearse", action="store_true",
                     help="run tests/rehearsal: every lab in full against a local hub server (olah; see README)")
    parser.addoption("--distributions", action="store_true",
                     help="build both wheels and run the grader from them (tests/test_distributions.py)")
