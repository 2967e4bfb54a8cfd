"""The pure-Python GPT-2 encoder matches two independent implementations built from the same vendored
files: `transformers`' GPT-2 tokenizer and a raw `tokenizers` ByteLevel BPE (Rust)."""

import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from labsupport import bpe

TRICKY = [
    "", " ", "  ", "\n", "\n\n\n", "\t \t", " \n ", "a  b", "a\n\nb", "trailing space ", " leading", "\r\n",
    "Hello world!", "Your drawing is charmingly anachronistic.", "running is very cool", "very cool!",
    "circumnavigate", "circumnavigtae", "I'm you're we've they'll he'd it's can't", "I'M YOU'RE", "''s'",
    "x's", "don't  's", "1234567890", "3.14159", "$1,000,000.00", "2024-01-31T12:00:00Z", "user@example.com",
    "https://example.com/a?b=c&d=e", "def f(x):\n    return x ** 2\n", "    indented\n\tcode", "<html><b>hi</b>",
    "🤗", "👍🏽", "👨‍👩‍👧", "日本語のテキスト", "Ελληνικά", "русский язык", "العربية", "हिन्दी", "한국어",
    "naïve café résumé", "e\u0301", "\u00a0non-breaking\u00a0space", "\u3000ideographic", "zero\u200bwidth",
    "\x00\x01\x1f control", "٣٤٥ ²³ ½ Ⅷ", "!!!???...", "—–-", "  multiple   spaces   ", "a" * 300,
    " ".join(["word"] * 50), "ĠĊ literal markers", "\ufffd", "\U0010ffff", "<|endoftext|>",
]

FRAGMENTS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'", " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0",
             "\u3000", "the", " The", "running", "42", "007", "3.5", "🤗", "👍🏽", "é", "e\u0301", "日本", "Ω", "!",
             "...", "?!", "-", "_", "(", ")", "@", "#", "ǅ", "١٢"]
# Assigned characters only: code points unassigned in Python 3.11's Unicode 14 tables may be letters in the
# newer tables of `regex` but not in those of the Rust regex engine (e.g. U+18D80, new in Unicode 17), so
# the two pre-tokenizers legitimately disagree there.
chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cn"))
texts = st.one_of(
    st.text(chars, max_size=40),  # any assigned unicode: all scripts, emoji, controls, combining marks
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),  # contractions, whitespace runs, digits
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(chars, max_size=4)), max_size=10).map("".join),
)
# Same examples every run (CI is reproducible); the fixtures are module-scoped, so reusing them is safe.
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def hf():
    return bpe.hf_gpt2_tokenizer()


@pytest.fixture(scope="module")
def raw():
    """A `tokenizers` BPE assembled by hand from the vocab/merges (not via transformers)."""
    encoder, merges = bpe.load_vocab_and_merges()
    tok = Tokenizer(models.BPE(vocab=dict(encoder), merges=list(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _assert_same(text, hf, raw):
    ours = bpe.encode(text)
    assert ours == hf(text, split_special_tokens=True)["input_ids"], f"transformers differs on {text!r}"
    assert ours == raw.encode(text).ids, f"tokenizers differs on {text!r}"
    assert bpe.decode(ours) == text


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_strings_match_hf(text, hf, raw):
    _assert_same(text, hf, raw)


@settings(max_examples=3000, **SETTINGS)
@given(text=texts)
def test_random_strings_match_hf_and_round_trip(text, hf, raw):
    _assert_same(text, hf, raw)


@settings(max_examples=300, **SETTINGS)
@given(ids=st.lists(st.integers(0, 50255), max_size=12))
def test_decode_of_any_ids_matches_tokenizers(ids, raw):
    # Arbitrary ids can cut a UTF-8 character in half: both sides must replace the broken bytes the same way.
    assert bpe.decode(ids) == raw.decode(ids, skip_special_tokens=False)


def test_known_ids_and_whitespace_marker():
    assert bpe.encode("Hello world") == [15496, 995]
    assert bpe.encode("very cool!") == [548, 3608, 0]
    assert bpe.encode("running is very cool")[-1] == bpe.encode(" cool")[0] != bpe.encode("cool")[0]
    enc = bpe.get_encoder()
    assert [enc.decoder[i] for i in bpe.encode("running is very cool")] == ["running", "Ġis", "Ġvery", "Ġcool"]


def test_endoftext_is_plain_text_here_but_special_in_transformers(hf):
    assert bpe.encode("<|endoftext|>") != [50256] == hf.encode("<|endoftext|>")
    assert bpe.decode([50256]) == "<|endoftext|>"


def test_encode_and_show_work_parts_are_consistent():
    text = "Your drawing is charmingly anachronistic."
    work = bpe.get_encoder().encode_and_show_work(text)
    assert work["bpe_idx"] == bpe.encode(text)
    assert "".join(work["tokens"]) == text
    assert [p["token"] for p in work["parts"]] == work["tokens"]
    for part in work["parts"]:
        assert set(part) == {"token", "token_bytes", "token_translated", "token_merged", "token_ix"}
        assert part["token_bytes"] == part["token"].encode("utf-8")
        assert len(part["token_translated"]) == len(part["token_bytes"])
        assert "".join(part["token_merged"]) == part["token_translated"]
    charming = next(p for p in work["parts"] if p["token"] == " charmingly")
    assert charming["token_merged"] == ["Ġcharming", "ly"]
    assert sum(len(p["token_ix"]) for p in work["parts"]) == len(work["bpe_idx"])


def test_bytes_to_unicode_is_a_printable_bijection():
    table = bpe.bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


def test_apply_merges_takes_a_list_or_rank_dict():
    merges = [("l", "o"), ("lo", "w"), ("e", "r")]
    assert bpe.apply_merges("lower", merges) == ["low", "er"]
    assert bpe.apply_merges(list("lower"), {p: i for i, p in enumerate(merges)}) == ["low", "er"]
    assert bpe.apply_merges("", merges) == [] and bpe.apply_merges("x", merges) == ["x"]
    assert bpe.get_pairs(("l", "o", "w")) == {("l", "o"), ("o", "w")}


def test_pretokenize_splits_like_gpt2():
    assert bpe.pretokenize("Hello   world's 42!!\n\n") == ["Hello", "  ", " world", "'s", " 42", "!!", "\n\n"]


def test_decode_accepts_numpy_and_torch_ints():
    ids = bpe.encode("tensor ids")
    assert bpe.decode(np.array(ids)) == bpe.decode(torch.tensor(ids)) == "tensor ids"


@pytest.mark.parametrize("bad", [b"bytes", bytearray(b"x"), 42, None, ["a", "list"]])
def test_encode_rejects_non_str(bad):
    with pytest.raises(TypeError, match="encode\\(\\) takes a str"):
        bpe.encode(bad)


def test_encode_rejects_lone_surrogates():
    with pytest.raises(ValueError, match="surrogate"):
        bpe.encode("bad \ud800 text")


@pytest.mark.parametrize("bad", ["text", b"\x01", 7, [1.0], [True], [None]])
def test_decode_rejects_non_int_ids(bad):
    with pytest.raises(TypeError, match="decode\\(\\) takes"):
        bpe.decode(bad)


@pytest.mark.parametrize("bad", [[50257], [-1], [0, 10**9]])
def test_decode_rejects_out_of_range_ids(bad):
    with pytest.raises(ValueError, match="out of range: valid ids are 0..50256"):
        bpe.decode(bad)


def test_sha256_mismatch_raises(tmp_path):
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(bpe.DATA_DIR / name, tmp_path / name)
    assert bpe.vendored_file("vocab.bpe", tmp_path) == tmp_path / "vocab.bpe"  # intact copy passes
    with open(tmp_path / "vocab.bpe", "a", encoding="utf-8") as f:
        f.write("Ġ x\n")  # one extra merge line
    with pytest.raises(ValueError, match="corrupt or was edited"):
        bpe.vendored_file("vocab.bpe", tmp_path)
    with pytest.raises(ValueError, match="corrupt or was edited"):
        bpe.load_vocab_and_merges(tmp_path)
    (tmp_path / "encoder.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        bpe.vendored_file("encoder.json", tmp_path)


def test_vendored_files_have_the_gpt2_sizes():
    encoder, merges = bpe.load_vocab_and_merges()
    assert len(encoder) == 50257 and len(merges) == 50000 and encoder["<|endoftext|>"] == 50256
