import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.text import Perplexity

from labsupport import classify, evaluation, gpt, hmm, lmtrain, lstm, streaming, textdata, weather
from labsupport.core import IGNORE_INDEX, count_parameters, eval_mode, perplexity


def test_one_ignore_index_everywhere():
    assert IGNORE_INDEX == -100  # F.cross_entropy's default ignore_index
    for module in (gpt, textdata, weather, streaming, lstm):
        assert module.IGNORE_INDEX is IGNORE_INDEX


def test_perplexity_of_one_loss_and_token_weighted():
    assert perplexity(math.log(10)) == pytest.approx(10)
    assert perplexity([1.0, 3.0]) == pytest.approx(math.exp(2.0))  # plain mean
    assert perplexity([1.0, 3.0], [3, 1]) == pytest.approx(math.exp(1.5))  # token-weighted
    assert perplexity(torch.tensor([1000.0])) > 1e300  # no OverflowError


def test_perplexity_matches_torchmetrics():
    metric, losses, counts = Perplexity(ignore_index=IGNORE_INDEX), [], []
    g = torch.Generator().manual_seed(0)
    for T in (3, 5, 8):
        logits, targets = torch.randn(2, T, 7, generator=g), torch.randint(7, (2, T), generator=g)
        targets[0, T // 2:] = IGNORE_INDEX
        metric.update(logits, targets)
        losses.append(F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item())
        counts.append(int((targets != IGNORE_INDEX).sum()))
    assert perplexity(losses, counts) == pytest.approx(metric.compute().item(), rel=1e-5)


@pytest.mark.parametrize("losses, counts, match", [([], None, "no losses"), ([1.0, 2.0], [3], "one token count"),
                                                   ([1.0], [0], "sum to 0")])
def test_perplexity_errors(losses, counts, match):
    with pytest.raises(ValueError, match=match):
        perplexity(losses, counts)


def test_the_exercise_names_are_the_one_implementation():
    assert streaming.perplexity_from_losses is perplexity and lstm.perplexity is perplexity
    assert lmtrain.perplexity is perplexity and classify.count_parameters is count_parameters


def test_count_parameters_counts_heads_and_shared_tensors_once():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    assert count_parameters(model) == (40 + 50, 40 + 50)
    model[1].weight = model[0].weight  # tied: counted once
    model[1].bias.requires_grad_(False)
    assert count_parameters(model) == (40, 50)


def test_eval_mode_restores_the_mode_even_when_the_block_raises():
    model = nn.Sequential(nn.Dropout(0.5))
    with eval_mode(model) as m:
        assert m is model and not model.training
    assert model.training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training


class Boom(nn.Module):
    """A model that crashes in its forward: evaluation must still leave it in training mode."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, *args):
        raise RuntimeError("boom")


@pytest.mark.parametrize("run", [
    lambda m: evaluation.evaluate(m, [(torch.zeros(1, 3).long(), torch.zeros(1, 3).long())]),
    lambda m: lmtrain.evaluate_lm(m, [(torch.zeros(3).long(), torch.zeros(3).long())]),
    lambda m: hmm.evaluate_model_loss(m, weather.WeatherDataset("test", num_instances=50)),
])
def test_evaluations_restore_training_mode_when_the_model_raises(run):
    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        run(model)
    assert model.training  # the old classify.evaluate and lstm.evaluate (now evaluation.evaluate) left it in eval mode
