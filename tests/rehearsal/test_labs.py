"""Every lab, in full at the tiny scale, against the rehearsal hub, with LABSUPPORT_PROFILE unset: setup()
must choose `full` by itself because the configured endpoint answers. Executed copies go to
build/rehearse/ (kept for inspection)."""

from pathlib import Path

import nbformat
import pytest

from labsupport.runner import REPO, find_labs, run_lab

OUT = Path("build/rehearse")
LABS = [p.name[:2] for p in find_labs(REPO / "notebooks")]


def cell_text(nb, needle: str) -> str:
    """All text output of the first code cell whose source contains `needle`."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and needle in c.source)
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        for mime in ("text/plain", "text/html", "application/javascript"):
            parts.append(str(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def lab_env(hub_env):
    return {**hub_env, "LABSUPPORT_PROFILE": None}  # detection decides


@pytest.mark.parametrize("lab", LABS)
def test_lab_runs_in_full(lab, lab_env, hub):
    path = find_labs(REPO / "notebooks", [lab])[0]
    result = run_lab(path, None, 900, OUT, "tiny", **lab_env)
    assert result.status == "ok", f"{path.name} failed in full: {result.error}\nserver log:\n{hub.log_tail()}"
    nb = nbformat.read(OUT / path.name, as_version=4)
    setup = cell_text(nb, "labsupport.setup(")
    assert "profile full" in setup and "scale tiny" in setup, setup
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]

    hf_hub = Path(lab_env["HF_HOME"]) / "hub"
    if lab == "02":  # the bertviz branch rendered its view; loading the hub's BERT (with heads) is quiet
        view = cell_text(nb, "head_view(")
        assert "bertviz" in view.lower() and "skipped" not in view, view[:500]
        bert_cell = next(c for c in nb.cells if c.cell_type == "code" and 'load_model("bert-base-uncased"' in c.source)
        assert not [o for o in bert_cell.outputs if o.get("name") == "stderr"], bert_cell.outputs
    if lab == "04":  # GPT-2 weights came through from_pretrained on the hub id
        assert list(hf_hub.glob("models--openai-community--gpt2/snapshots/*/model.safetensors"))
    if lab == "05":
        assert list(hf_hub.glob("models--EleutherAI--gpt-neo-125m/snapshots/*/model.safetensors"))
        assert "the same multiset with 2 workers: True" in cell_text(nb, "block_multiset(0)")
    if lab == "07":  # Part B fine-tuned the hub model with the 🤗 Trainer
        assert "trained in" in cell_text(nb, "hf_trainer.train()")
