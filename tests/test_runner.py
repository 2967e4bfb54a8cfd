"""The main job on a tiny notebook folder: headline numbers reach the table, a failure is named."""

import json

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from labsupport import runner
from labsupport.__main__ import main


def _write(path, *sources):
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)


def test_run_reports_numbers_and_names_failing_cell(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as by default, while kernels run inside notebooks/
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _write(nbs / "01_good.ipynb", "import labsupport\ncfg = labsupport.setup('01_good')",
           "labsupport.record(accuracy=0.75, profile=cfg.profile, scale=cfg.scale)")
    _write(nbs / "02_bad.ipynb", "x = 1", "# compute the answer\n1 / 0")
    _write(nbs / "notes.ipynb", "raise SystemExit")  # not a lab: ignored
    out = tmp_path / "out"
    code = main(["run", "--profile", "smoke", "--scale", "laptop", "--notebooks", str(nbs), "--out", "out",
                 "--timeout", "120"])
    captured = capsys.readouterr()
    assert code == 1
    assert "profile smoke, scale laptop" in captured.out  # the table says which scale its numbers come from
    table = captured.out.split("headline numbers", 1)[1]
    assert "01_good" in table and "accuracy=0.75" in table and "profile=smoke" in table
    assert "scale=laptop" in table  # the runner's scale reached the kernel
    assert "02_bad" in table and "FAILED" in table
    assert "cell 1 ('# compute the answer'): ZeroDivisionError" in captured.err
    assert (out / "01_good.ipynb").exists() and (out / "02_bad.ipynb").exists()
    assert json.loads((out / "01_good.results.json").read_text())["accuracy"] == 0.75


def test_lab_selection(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for stem in ("01_a", "03_c", "10_j"):
        _write(nbs / f"{stem}.ipynb", "pass")
    assert [p.stem for p in runner.find_labs(nbs, ["3", "10"])] == ["03_c", "10_j"]
    import pytest

    with pytest.raises(SystemExit, match="no lab numbered 02"):
        runner.find_labs(nbs, ["02"])


def test_format_table_aligns_columns():
    rows = [runner.LabResult("01_tokenization", "ok", 1.234, {"merges": 100}),
            runner.LabResult("02_x", "FAILED", 10.0)]
    lines = runner.format_table(rows).splitlines()
    assert lines[0].startswith("lab")
    assert lines[0].index("status") == lines[2].index(" ok ") + 1 == lines[3].index("FAILED")
    assert "merges=100" in lines[2] and "1.2" in lines[2]


def test_the_console_script_and_python_m_run_the_same_cli():
    import importlib
    import tomllib

    project = tomllib.loads((runner.REPO / "pyproject.toml").read_text())["project"]
    module, func = project["scripts"]["labsupport"].split(":")
    assert getattr(importlib.import_module(module), func) is main  # importing labsupport.__main__ does not exit
