"""Notebook housekeeping for contributors: ``python -m labsupport refresh NN`` executes a solution
notebook in the smoke profile and keeps only the outputs nbval compares (cells marked
``# NBVAL_CHECK_OUTPUT``); everything else, and all widget state, is stripped so commits carry no
volatile output."""

from __future__ import annotations

import os
import re
from pathlib import Path

from labsupport import RELEASE, REPO_URL
from labsupport.io import atomic_path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
COLAB_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/")


def colab_install_cell() -> str:
    """The install cell every notebook starts with: only in Colab, only the base dependencies (Colab's own
    kernel packages stay untouched), pinned to this release's tag."""
    return (
        "import sys\n"
        'if "google.colab" in sys.modules:  # Colab: install the course\'s support package, this notebook\'s release\n'
        f'    %pip install -q "labsupport @ git+{REPO_URL}@{RELEASE}"'
    )


def colab_badge_prefix() -> str:
    """Where the "Open in Colab" badge points: this release's tag, not the moving default branch."""
    return f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}/blob/{RELEASE}/"


def pin_colab(nb) -> None:
    """Point the notebook's Colab badge and install cell at `labsupport.RELEASE` (in place)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and COLAB_BADGE.search(cell.source):
            cell.source = COLAB_BADGE.sub(colab_badge_prefix(), cell.source)
        elif cell.cell_type == "code" and "google.colab" in cell.source and "%pip install" in cell.source:
            cell.source = colab_install_cell()


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK_MARK in cell.source


def strip_volatile(nb):
    """Clear outputs of unchecked cells, execution counts, and widget/volatile metadata (in place)."""
    nb.metadata.pop("widgets", None)
    for key in ("signature",):
        nb.metadata.pop(key, None)
    ordinal = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        if cell.cell_type != "code":
            continue
        ordinal += 1
        if not is_checked(cell):
            cell.execution_count = None
            cell.outputs = []
            continue
        # nbval refuses a reference cell that has outputs but no execution count ("Unrun reference cell"),
        # so checked cells keep a stable count: their position among the code cells.
        cell.execution_count = ordinal
        for out in cell.outputs:
            if "execution_count" in out:
                out["execution_count"] = ordinal
            if isinstance(out.get("metadata"), dict):
                out["metadata"].clear()
    return nb


def volatile_problems(nb) -> list[str]:
    """What `strip_volatile` would remove (used by a test to keep committed notebooks clean)."""
    problems = []
    if "widgets" in nb.metadata:
        problems.append("notebook metadata holds widget state")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.outputs and not is_checked(cell):
            problems.append(f"cell {i} has outputs but is not marked {CHECK_MARK}")
        if cell.cell_type == "code" and cell.execution_count is not None and not is_checked(cell):
            problems.append(f"cell {i} has an execution count")
    return problems


def execute(nb, path: Path, timeout: int, **env: str | None) -> None:
    """Run `nb` headless in a fresh kernel working in the notebook's folder. `env` adds variables to the
    kernel's environment (None removes one); this process's own environment is left alone."""
    from nbclient import NotebookClient  # heavy (~1 s, jupyter_client + zmq): only executing needs it

    kernel_env = {**os.environ, "MPLBACKEND": "Agg", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for key, value in env.items():
        if value is None:
            kernel_env.pop(key, None)
        else:
            kernel_env[key] = value
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_env)


def refresh(path: Path, timeout: int = 600) -> None:
    """Execute `path` in the smoke profile at the tiny scale and write it back with only checked outputs kept."""
    import nbformat  # heavy (~1 s with jsonschema): only refreshing needs it

    nb = nbformat.read(path, as_version=4)
    pin_colab(nb)
    execute(nb, path, timeout, LABSUPPORT_PROFILE="smoke", LABSUPPORT_SCALE="tiny", LABSUPPORT_RESULTS=None)
    strip_volatile(nb)
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
