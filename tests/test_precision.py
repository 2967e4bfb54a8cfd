"""The one precision policy (labsupport.precision.amp): what it picks per device capability, and that every
loop (Trainer, LSTM, classifier, HMM and streaming evaluation) runs under it. No GPU is needed: the capability is
monkeypatched, and the CUDA decision is then executed with CPU autocast of the same dtype."""

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM

from labsupport import classify, evaluation, hmm, lstm, precision, streaming, trainer, weather
from labsupport.classify import GPTClassifier
from labsupport.config import CfgNode
from labsupport.gpt import GPT


def capability(monkeypatch, major: int, minor: int) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))


def tiny_neo():
    torch.manual_seed(0)
    cfg = GPTNeoConfig(vocab_size=50261, max_position_embeddings=64, hidden_size=32, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], window_size=8)
    return GPTNeoForCausalLM(cfg).eval()


@pytest.mark.parametrize("training", [True, False])
def test_t4_gets_fp16_with_a_grad_scaler_for_training(monkeypatch, training):
    capability(monkeypatch, 7, 5)
    p = precision.amp("cuda", training=training)
    assert p.dtype is torch.float16 and p.scale_grads is training and p.name == "fp16"
    assert "7.5" in p.why and "emulates bf16" in p.why
    assert p.trainer_kwargs() == {"bf16": False, "fp16": True}
    assert precision.amp("cuda", fp16_safe=False).dtype is None  # fp32 where fp16 overflows


@pytest.mark.parametrize("cap", [(8, 0), (8, 9), (9, 0)])
def test_ampere_and_newer_get_bf16_without_scaling(monkeypatch, cap):
    capability(monkeypatch, *cap)
    p = precision.amp("cuda")
    assert p.dtype is torch.bfloat16 and not p.scale_grads and p.trainer_kwargs() == {"bf16": True, "fp16": False}
    assert classify.precision_kwargs("cuda") == {"bf16": True, "fp16": False}


@pytest.mark.parametrize("cap", [(7, 5), (9, 0)])
def test_gpt_neo_is_never_autocast(monkeypatch, cap):
    capability(monkeypatch, *cap)
    p = precision.amp("cuda", training=False, model=tiny_neo())
    assert p.dtype is None and "GPT-Neo" in p.why
    assert classify.precision_kwargs("cuda", model=tiny_neo()) == {"bf16": False, "fp16": False}


def test_amp_turned_off_is_float32_everywhere(monkeypatch):
    capability(monkeypatch, 9, 0)
    for device in ("cuda", "cpu"):
        p = precision.amp(device, enabled=False)
        assert p.dtype is None and not p.scale_grads and "amp is off" in p.why


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_cpu_and_mps_run_float32(device):
    p = precision.amp(device)
    assert p.dtype is None and not p.scale_grads
    with p.autocast():
        assert not torch.is_autocast_enabled("cpu")


# ------------------------------------------------------------------ the loops run under the policy


@pytest.fixture(params=[(7, 5), (9, 0)], ids=["T4", "H100"])
def policy_on_cpu(request, monkeypatch):
    """The real policy for a CUDA device of the given capability, executed with CPU autocast; every
    module that imported `amp` gets it. Yields the dtype that decision autocasts to."""
    capability(monkeypatch, *request.param)
    real = precision.amp

    def as_cpu(device, **kwargs):
        decision = real("cuda", **kwargs)
        return dataclasses.replace(decision, device_type="cpu")

    for module in (precision, trainer, classify, hmm):
        monkeypatch.setattr(module, "amp", as_cpu)
    return torch.float16 if request.param == (7, 5) else torch.bfloat16


class Spy(torch.nn.Module):
    """Wraps a model(x, y) -> (logits, loss) and records the autocast dtype and the logits' dtype."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x, y=None):
        logits, loss = self.inner(x, y)
        on = torch.is_autocast_enabled("cpu")
        self.seen.append((torch.get_autocast_dtype("cpu") if on else None, logits.dtype, loss.dtype))
        return logits, loss


def tiny_gpt(vocab=20):
    torch.manual_seed(0)
    return GPT(CfgNode(model_type=None, n_layer=1, n_head=2, n_embd=16, vocab_size=vocab, block_size=8,
                       embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))


def test_trainer_trains_and_evaluates_under_the_policy(policy_on_cpu, monkeypatch):
    scalers = []
    real_scaler = precision.Precision.grad_scaler
    monkeypatch.setattr(precision.Precision, "grad_scaler", lambda self: scalers.append(self.scale_grads)
                        or real_scaler(dataclasses.replace(self, scale_grads=False)))  # CPU: no real scaling
    model = Spy(tiny_gpt())
    data = TensorDataset(torch.randint(0, 20, (32, 8)), torch.randint(0, 20, (32, 8)))
    config = trainer.Trainer.get_default_config()
    config.merge_from_dict(dict(device="cpu", max_iters=2, batch_size=4, progress=False, eval_iters=1))
    t = trainer.Trainer(config, model, data, eval_dataset=data)
    t.run()
    t.evaluate()
    assert {s[0] for s in model.seen} == {policy_on_cpu}
    assert {s[1] for s in model.seen} == {torch.float32}  # logits for the loss stay float32
    assert scalers == [policy_on_cpu is torch.float16]  # a GradScaler exactly when training in fp16


def test_lstm_trains_and_evaluates_under_the_policy(policy_on_cpu):
    """Lab 06's LSTM, trained by the Trainer over a length-bucketed DataLoader: autocast on, logits float32."""
    torch.manual_seed(0)
    config = lstm.LSTMLanguageModel.get_default_config()
    config.merge_from_dict(dict(vocab_size=20, embed_dim=8, hidden_size=8))
    model = Spy(lstm.LSTMLanguageModel(config))
    loader = lstm.make_loader([[2, *torch.randint(4, 20, (n,)).tolist(), 3] for n in range(3, 11)], 4)
    train_config = trainer.Trainer.get_default_config()
    train_config.merge_from_dict(dict(device="cpu", max_epochs=1, progress=False))
    trainer.Trainer(train_config, model, loader).run()
    evaluation.evaluate(model, loader)
    assert len(model.seen) == 2 * len(loader)
    assert {s[0] for s in model.seen} == {policy_on_cpu} and {s[1] for s in model.seen} == {torch.float32}


def test_classifier_evaluation_follows_the_policy(policy_on_cpu):
    model = GPTClassifier(tiny_gpt(), n_classification_class=2, pad_id=0)
    spy = Spy(model)
    data = TensorDataset(torch.randint(1, 20, (6, 8)), torch.randint(0, 2, (6,)))
    evaluation.evaluate(spy, torch.utils.data.DataLoader(data, batch_size=3))  # the one evaluation
    assert {s[0] for s in spy.seen} == {policy_on_cpu} and {s[1] for s in spy.seen} == {torch.float32}


def test_hmm_evaluation_follows_the_policy(policy_on_cpu):
    """hmm's per-position evaluation (not evaluation.evaluate: a value per state position) runs under the policy."""
    seen = []
    model = tiny_gpt(vocab=8)
    model.register_forward_hook(lambda m, args, out: seen.append(
        torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None))
    data = weather.WeatherDataset("test", seq_len=4, num_instances=20)
    loss = hmm.evaluate_model_loss(model, data, device="cpu", batch_size=8)
    assert loss.shape == (4,) and loss.dtype == torch.float64 and seen and set(seen) == {policy_on_cpu}


# ------------------------------------------------------------------ perplexity under the policy


@pytest.fixture(scope="module")
def tokenizer():
    return streaming.build_tokenizer()


@pytest.mark.parametrize("cap", [(7, 5), (9, 0)], ids=["T4", "H100"])
def test_lab05_perplexity_under_the_policy_is_within_1_percent_of_fp32(monkeypatch, tokenizer, cap):
    capability(monkeypatch, *cap)
    real = precision.amp
    chosen = []

    def as_cpu(device, **kwargs):
        decision = real("cuda", **kwargs)
        chosen.append(decision)
        return dataclasses.replace(decision, device_type="cpu")

    monkeypatch.setattr(precision, "amp", as_cpu)
    stream = streaming.load_stream("train").take(30)
    kw = dict(block_size=32, stride=24, batch_size=4)
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2,
                                      n_head=2)).eval()
    for model in (tiny_neo(), gpt2):
        model.resize_token_embeddings(len(tokenizer))
        fp32 = streaming.evaluate(model, tokenizer, stream, amp=False, **kw)
        mixed = streaming.evaluate(model, tokenizer, stream, **kw)
        assert mixed.sliding_perplexity == pytest.approx(fp32.sliding_perplexity, rel=0.01)
        assert mixed.naive_perplexity == pytest.approx(fp32.naive_perplexity, rel=0.01)
    off_neo, neo, off_gpt2, other = chosen  # amp=False asks the policy too (enabled=False: float32)
    assert off_neo.dtype is None and off_gpt2.dtype is None and "amp is off" in off_gpt2.why
    assert neo.dtype is None  # GPT-Neo: float32 whatever the GPU
    assert other.dtype is (torch.float16 if cap == (7, 5) else torch.bfloat16)
    assert mixed.settings["precision"] == other.name


def test_evaluation_forwards_build_no_kv_cache(tokenizer):
    model = tiny_neo()
    model.resize_token_embeddings(len(tokenizer))
    seen = []
    model.base_model.register_forward_hook(lambda m, args, kwargs, out: seen.append(
        (kwargs.get("use_cache"), out.past_key_values)), with_kwargs=True)
    streaming.evaluate(model, tokenizer, streaming.load_stream("train").take(5), block_size=32, stride=24,
                       batch_size=4)
    assert seen and all(use_cache is False and past is None for use_cache, past in seen)


def test_workers_fork_with_tokenizer_parallelism_off(monkeypatch, tokenizer):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    ds = streaming.StreamingLMIterableDataset(streaming.load_stream("train").take(4), tokenizer, 32, 24)
    streaming.make_dataloader(ds, batch_size=2, num_workers=2)
    import os

    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
