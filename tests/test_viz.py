"""Tests for labsupport.viz (Agg backend: the root conftest sets MPLBACKEND=Agg)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from labsupport import viz

TOKENS = ["The", " cat", " sat", " on", " the"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _attn(heads=6, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(heads, T, T, generator=g).softmax(-1)  # (H, T, T)


def _head_axes(fig):
    return [ax for ax in fig.axes if ax.get_images() and ax.get_title().startswith("head")]


def test_attention_heads_grid_labels_and_data():
    attn = _attn()
    fig = viz.attention_heads(attn, TOKENS, ncols=4, title="my title")
    axes = _head_axes(fig)
    assert len(axes) == 6  # 2x4 grid, the two unused cells removed; the colorbar is not a head
    assert fig.get_suptitle() == "my title"
    for h, ax in enumerate(axes):
        assert ax.get_title() == f"head {h}"
        assert [t.get_text() for t in ax.get_xticklabels()] == TOKENS
        assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS
        np.testing.assert_allclose(ax.get_images()[0].get_array(), attn[h].numpy())


def test_attention_heads_accepts_batched_tensor_and_head_subset():
    attn = _attn()
    fig = viz.attention_heads(attn[None], TOKENS, heads=[4, 1], ncols=3)
    axes = _head_axes(fig)
    assert [ax.get_title() for ax in axes] == ["head 4", "head 1"]
    np.testing.assert_allclose(axes[0].get_images()[0].get_array(), attn[4].numpy())
    assert len(_head_axes(viz.attention_heads(attn, TOKENS, heads=2))) == 1


def test_attention_heads_from_a_hugging_face_model():
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=3, n_embd=12, vocab_size=50, n_positions=16, attn_implementation="eager")
    model = GPT2Model(config).eval()
    with torch.no_grad():
        out = model(torch.tensor([[1, 7, 3, 9, 4]]), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[1].shape == (1, 3, 5, 5)
    fig = viz.attention_heads(out.attentions, TOKENS, layer=1)
    axes = _head_axes(fig)
    assert len(axes) == 3 and fig.get_suptitle() == "layer 1"
    for h, ax in enumerate(axes):
        image = np.asarray(ax.get_images()[0].get_array())
        np.testing.assert_allclose(image, out.attentions[1][0, h].numpy(), rtol=1e-6)
        assert np.allclose(np.triu(image, 1), 0)  # causal: no query attends to a later key


@pytest.mark.parametrize(
    ("attn", "kwargs", "match"),
    [
        (torch.rand(5, 5), {}, r"must be \(heads, T, T\) or \(1, heads, T, T\), got shape \(5, 5\)"),
        (torch.rand(2, 5, 4), {}, r"got shape \(2, 5, 4\)"),
        (torch.rand(2, 2, 5, 5), {}, "batch of 2 sequences"),
        (torch.rand(1, 2, 2, 5, 5), {}, r"got shape \(1, 2, 2, 5, 5\)"),
        ((torch.rand(1, 2, 5, 5),) * 3, {}, r"holds 3 layers: pick one with layer=0..2"),
        ((torch.rand(1, 2, 5, 5),) * 3, {"layer": 3}, "layer=3 is out of range for 3 layers"),
        (torch.rand(2, 5, 5), {"layer": 0}, "layer= only applies to a tuple"),
        (torch.rand(2, 5, 5), {"heads": [0, 2]}, r"head indices in 0..1, got \[0, 2\]"),
        (torch.rand(2, 5, 5), {"ncols": 0}, "ncols must be >= 1"),
    ],
)
def test_attention_heads_bad_inputs(attn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.attention_heads(attn, TOKENS, **kwargs)


def test_attention_heads_token_count_must_match():
    with pytest.raises(ValueError, match="got 4 tokens for 5 positions"):
        viz.attention_heads(_attn(), TOKENS[:4])


def test_plot_losses_curves_pairs_and_floor():
    fig = viz.plot_losses({"train": [1.0, 0.6, 0.4], "test": [(0, 1.1), (2, 0.5)]}, floor=0.248, title="GPT")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["train"].get_xydata(), [[0, 1.0], [1, 0.6], [2, 0.4]])
    np.testing.assert_allclose(lines["test"].get_xydata(), [[0, 1.1], [2, 0.5]])
    floor = lines["Bayes floor (0.248)"]
    assert set(floor.get_ydata()) == {0.248} and floor.get_linestyle() == "--"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test", "Bayes floor (0.248)"]
    assert ax.get_title() == "GPT"
    fig2 = viz.plot_losses({"train": torch.tensor([3.0, 2.0])}, logy=True)
    assert fig2.axes[0].get_yscale() == "log" and len(fig2.axes[0].get_lines()) == 1


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ({}, "non-empty dict"),
        ([1.0, 2.0], "non-empty dict"),
        ({"train": ["a", "b"]}, r"history\['train'\] must be a list of numbers"),
        ({"train": [(0, 1, 2)]}, r"history\['train'\]"),
    ],
)
def test_plot_losses_bad_history(history, match):
    with pytest.raises(ValueError, match=match):
        viz.plot_losses(history)


def test_plot_heatmap_labels_annotations_and_errors():
    m = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.25, 0.25]])
    fig = viz.plot_heatmap(m, xlabels=["a", "b", "c"], ylabels=["x", "y"], annotate=True, title="T")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colorbar
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    assert [t.get_text() for t in ax.texts] == ["0.10", "0.90", "0.00", "0.50", "0.25", "0.25"]
    _, own_ax = plt.subplots()
    assert viz.plot_heatmap(np.eye(2), ax=own_ax, colorbar=False) is own_ax.figure
    with pytest.raises(ValueError, match=r"2-D matrix, got shape \(3,\)"):
        viz.plot_heatmap([1, 2, 3])
    with pytest.raises(ValueError, match="got 2 xlabels for 3 positions"):
        viz.plot_heatmap(m, xlabels=["a", "b"])
