import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from labsupport.attention import CausalSelfAttention
from labsupport.config import CfgNode
from labsupport.core import count_parameters
from labsupport.gpt import GPT, IGNORE_INDEX, PRESETS
from labsupport.trainer import make_adamw

VOCAB, BLOCK = 61, 32


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny random HF GPT-2 saved to disk, with weights big enough that greedy choices are not near-ties."""
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=BLOCK, n_embd=24, n_layer=2, n_head=3,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    hf = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(hf_dir):
    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    ours = GPT.from_pretrained(hf_dir).eval()
    return hf, ours


def nano(vocab=8, block=11, **kw):
    c = GPT.get_default_config()
    c.model_type = "gpt-nano"
    c.vocab_size, c.block_size = vocab, block
    c.merge_from_dict(kw)
    return c


def test_logits_match_hf(models):
    hf, ours = models
    idx = torch.randint(VOCAB, (3, BLOCK), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, loss = ours(idx)
        ref = hf(idx).logits
    assert loss is None and logits.shape == (3, BLOCK, VOCAB)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=0)


def test_forward_hidden_matches_hf_last_hidden_state(hf_dir, models):
    _, ours = models
    body = GPT2Model.from_pretrained(hf_dir).eval()
    idx = torch.randint(VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = ours.forward_hidden(idx)
        torch.testing.assert_close(h, body(idx).last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.lm_head(h), ours(idx)[0])
    assert h.shape == (2, 9, 24)


def test_attention_weights_match_hf_eager(hf_dir, models):
    _, ours = models
    hf = GPT2LMHeadModel.from_pretrained(hf_dir, attn_implementation="eager").eval()
    idx = torch.randint(VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(idx, output_attentions=True).attentions
    maps, x = [], ours.transformer.wte(idx) + ours.transformer.wpe(torch.arange(7))  # dropout is off in eval
    with torch.no_grad():
        for block in ours.transformer.h:  # Block.forward, keeping each layer's attention weights
            a, w = block.attn(block.ln_1(x), return_weights=True)
            maps.append(w)
            x = x + a
            x = x + block.mlp(block.ln_2(x))
    assert len(maps) == 2 and maps[0].shape == (2, 3, 7, 7)
    for a, b in zip(maps, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_greedy_generation_matches_hf(models):
    hf, ours = models
    idx = torch.tensor([[5, 17, 3], [40, 2, 9]])
    ref = hf.generate(idx, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(idx))
    out = ours.generate(idx, max_new_tokens=12)
    assert out.shape == (2, 15)
    assert torch.equal(out, ref)


def test_sampling_is_reproducible_and_top_k_1_is_greedy(models):
    _, ours = models
    idx = torch.tensor([[1, 2, 3]])
    a = ours.generate(idx, 10, do_sample=True, temperature=1.5, generator=torch.Generator().manual_seed(0))
    b = ours.generate(idx, 10, do_sample=True, temperature=1.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert torch.equal(ours.generate(idx, 10, do_sample=True, top_k=1), ours.generate(idx, 10))
    samples = {tuple(ours.generate(idx, 4, do_sample=True).tolist()[0]) for _ in range(10)}
    assert len(samples) > 1  # sampling at temperature 1 does vary
    with pytest.raises(ValueError, match="temperature"):
        ours.generate(idx, 2, do_sample=True, temperature=0)


def test_generate_past_block_size_and_restores_train_mode():
    torch.manual_seed(0)
    m = GPT(nano())
    m.train()
    out = m.generate(torch.zeros(1, 1, dtype=torch.long), max_new_tokens=20)
    assert out.shape == (1, 21) and m.training


def test_loss_is_cross_entropy_and_honours_ignore_index(models):
    _, ours = models
    g = torch.Generator().manual_seed(4)
    idx = torch.randint(VOCAB, (2, 6), generator=g)
    targets = torch.randint(VOCAB, (2, 6), generator=g)
    targets[0, :3] = IGNORE_INDEX
    targets[1, 5] = -100
    with torch.no_grad():
        logits, loss = ours(idx, targets)
    keep = targets != -100
    logp = F.log_softmax(logits, dim=-1)[keep]  # (n_kept, V)
    expected = -logp.gather(1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, expected)
    assert keep.sum() == 8
    with pytest.raises(ValueError, match="same shape"):
        ours(idx, targets[:, :3])


def test_presets_and_parameter_count(capsys):
    m = GPT(nano())
    assert "number of parameters: 0.09M" in capsys.readouterr().out
    assert m.num_parameters() == 85_824 + 8 * 48  # embeddings + blocks + ln_f + lm_head (not tied to wte)
    assert m.num_parameters() == count_parameters(m)[1]  # the one rule every model follows
    for name in ("gpt-nano", "gpt-micro", "gpt-mini"):
        c = nano()
        c.model_type = name
        m = GPT(c)
        dims = PRESETS[name]
        assert (len(m.transformer.h), m.transformer.h[0].attn.n_head, m.config.n_embd) == (
            dims["n_layer"], dims["n_head"], dims["n_embd"])
    c = nano(vocab=50257, block=1024)
    c.model_type = "gpt2"
    with torch.device("meta"):  # no memory, no init time
        # GPT-2 small's 124,439,808 (its lm_head is tied to wte) plus our untied lm_head
        assert GPT(c).num_parameters() == 124_439_808 + 50257 * 768


def test_config_errors():
    c = nano()
    c.vocab_size = None
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(c)
    with pytest.raises(ValueError, match="not both"):
        GPT(nano(n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="unknown model_type"):
        GPT(nano(model_type="gpt-huge"))
    m = GPT(nano(model_type=None, n_layer=1, n_head=2, n_embd=8))
    assert len(m.transformer.h) == 1
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 12, dtype=torch.long))


class SDPAAttention(nn.Module):
    """A student-style attention with the reference's constructor and parameter names."""

    calls = 0

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.query, self.key, self.value, self.proj = (nn.Linear(config.n_embd, config.n_embd) for _ in range(4))

    def forward(self, x):
        SDPAAttention.calls += 1
        B, T, C = x.shape

        def heads(t):
            return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                           is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


def test_custom_attention_class_plugs_in(hf_dir, models):
    hf, ours = models
    custom = GPT.from_pretrained(hf_dir, attention_cls=SDPAAttention).eval()
    assert all(isinstance(b.attn, SDPAAttention) for b in custom.transformer.h)
    assert all(isinstance(b.attn, CausalSelfAttention) for b in ours.transformer.h)
    idx = torch.randint(VOCAB, (2, 10), generator=torch.Generator().manual_seed(5))
    before = SDPAAttention.calls
    with torch.no_grad():
        torch.testing.assert_close(custom(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)
    assert SDPAAttention.calls - before == 2  # one call per layer
    m = GPT(nano(attention_cls=SDPAAttention))
    assert isinstance(m.transformer.h[0].attn, SDPAAttention)
    with pytest.raises(ValueError, match="cannot override n_layer"):
        GPT.from_pretrained(hf_dir, n_layer=1)


def test_pretrained_gpt2_ties_its_head_to_the_token_embedding(models):
    hf, ours = models
    assert ours.lm_head.weight is ours.transformer.wte.weight  # like GPT-2 (tie_word_embeddings)
    assert ours.num_parameters() == hf.num_parameters()  # the shared matrix counts once, as in 🤗
    tc = type("TC", (), dict(learning_rate=1e-3, betas=(0.9, 0.95), weight_decay=0.1))
    decay, no_decay = (g["params"] for g in make_adamw(ours, tc).param_groups)  # AdamW rejects a tensor twice
    assert len(decay) + len(no_decay) == len(list(ours.parameters()))
    assert any(p is ours.transformer.wte.weight for p in no_decay)  # an embedding: not decayed
    scratch = GPT(nano())
    assert scratch.lm_head.weight is not scratch.transformer.wte.weight  # a lab model trains its own head


def test_gpt2_small_has_gpt2s_parameter_count(capsys):
    with torch.device("meta"):  # shapes only: no 500 MB of weights
        m = GPT(nano(vocab=50257, block=1024, model_type="gpt2", tie_weights=True))
    assert m.num_parameters() == 124_439_808  # openai-community/gpt2's count
    assert "number of parameters: 124.44M" in capsys.readouterr().out


def test_from_pretrained_takes_a_directory_or_hub_id_not_an_asset_name():
    with pytest.raises(OSError, match=r"no GPT-2 checkpoint at 'no-such-model' .*"
                                      r"assets.load_model\('no-such-model', GPT\)"):
        GPT.from_pretrained("no-such-model")  # HF_HUB_OFFLINE (conftest): not on disk, not in the hub cache


def test_make_adamw_decays_only_linear_weights():
    m = GPT(nano())
    tc = type("TC", (), dict(learning_rate=1e-3, betas=(0.9, 0.95), weight_decay=0.1))
    opt = make_adamw(m, tc)
    decay, no_decay = opt.param_groups
    linear_weights = {id(mod.weight) for mod in m.modules() if isinstance(mod, nn.Linear)}
    assert {id(p) for p in decay["params"]} == linear_weights
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.9, 0.95)


def test_cfgnode_access_merge_dict_and_str():
    c = CfgNode(a=1, sub=CfgNode(b=2))
    c.merge_from_dict({"a": 3, "sub": {"b": 4}, "new": SDPAAttention})
    assert c.a == 3 and c.sub.b == 4 and "new" in c
    assert c.to_dict() == {"a": 3, "sub": {"b": 4}, "new": SDPAAttention}
    assert str(c) == "a: 3\nsub:\n    b: 4\nnew: SDPAAttention\n"
