"""Lab 03's recipe trains gpt-nano to within 0.05 nats of the exact Bayes floor, measured as the mean loss over a
whole held-out split (not a noisy batch). ~10 s on one free CPU core."""

import math

import pytest
import torch

from labsupport import hmm, weather
from labsupport.gpt import GPT
from labsupport.trainer import Trainer

T, ITERS, BATCH_SIZE, LR = 6, 600, 64, 3e-3



@pytest.mark.slow
def test_gpt_nano_trains_to_within_005_nats_of_the_bayes_floor(one_thread):
    train = weather.WeatherDataset("train", seq_len=T, num_instances=20_000, proba=weather.FIXED_PROBA)
    held_out = weather.WeatherDataset("test", seq_len=T, num_instances=10_000, proba=weather.FIXED_PROBA, seed=1)
    config = GPT.get_default_config()
    config.merge_from_dict(dict(model_type="gpt-nano", vocab_size=8, block_size=2 * T - 1,
                                embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    torch.manual_seed(0)
    model = GPT(config)
    train_config = Trainer.get_default_config()
    train_config.merge_from_dict(dict(device="cpu", max_iters=ITERS, batch_size=BATCH_SIZE, learning_rate=LR,
                                      progress=False))
    trainer = Trainer(train_config, model, train)

    def cosine(tr):  # as in the notebook: decay to 0 so the last steps settle instead of bouncing around the floor
        for group in tr.optimizer.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * tr.iter_num / ITERS))

    trainer.add_callback("on_batch_end", cosine)
    trainer.run()

    floor = hmm.bayes_floor(weather.FIXED_PROBA, T).loss  # exact expectation, ~0.248 nats per weather token
    loss = hmm.evaluate_model_loss(model, held_out).mean().item()
    bayes_here = hmm.bayes_loss(held_out).mean().item()  # the best predictor on these very sequences
    assert loss - floor < 0.05, f"held-out loss {loss:.4f} is {loss - floor:.4f} nats above the floor {floor:.4f}"
    assert loss > bayes_here - 0.01, f"held-out loss {loss:.4f} beats the Bayes predictor ({bayes_here:.4f}): a leak?"
    assert sum(trainer.losses[:20]) / 20 > floor + 0.5  # it did start far from the floor (ln 8 = 2.08)
