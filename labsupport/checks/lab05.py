"""Self-checks for Lab 05 (streaming perplexity). Each compares the student's function with the reference in
`labsupport.streaming` on small fixed inputs, edge cases included (no model, no data files: milliseconds)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from labsupport import streaming
from labsupport.check import exercise, expect_equal, short


def _raises_value_error(fn: Callable[[], object]) -> bool:
    """True when fn() raises ValueError, at the call or (for a generator) on the first next()."""
    try:
        result = fn()
        if isinstance(result, Iterator):
            list(result)
    except ValueError:
        return True
    except Exception:  # any other error is the wrong error
        return False
    return False


# ---------------------------------------------------------------------------------------------- 05.1

EXAMPLES = [
    {"id": 0, "verse_text": "the sea sings in the river, charming and beautiful", "label": 1},
    {"id": 1, "verse_text": "with pale and weary face", "label": 0},
    {"id": 2, "verse_text": "and the dark night falls", "label": 2},
    {"id": 3, "verse_text": "  leading and trailing spaces stay  ", "label": 3},
    {"id": 4, "verse_text": "", "label": 0},
]


@exercise("05.1", title="format an example",
          hint="the sentiment tag names the label (not its number) and comes first, then one space, then the "
               "verse as it is",
          hint2="an f-string with the label name inside <sentiment_...>")
def check_format_example(format_example: Callable) -> str:
    for ex in EXAMPLES:
        expect_equal(format_example(dict(ex)), streaming.format_example(ex), f"format_example({short(ex, 90)})")
    return f"{len(EXAMPLES)} examples formatted like the reference"


# ---------------------------------------------------------------------------------------------- 05.2

EOS = 0
BLOCK_CASES = [  # (docs, block_size, stride)
    ([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4, 3),  # 12 tokens with EOS
    ([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4, 4),  # no overlap
    ([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4, 1),  # stride 1
    ([list(range(1, 20))], 5, 3),  # a document longer than a block
    ([[1, 2], [3]], 8, 6),  # the whole stream fits in one partial block
    ([[1, 2, 3, 4, 5, 6, 7]], 4, 2),  # leftovers already covered: no final block
    ([[], [7], []], 2, 1),  # empty documents still add their EOS
    ([], 4, 2),  # empty stream: no blocks
]


@exercise("05.2", title="rolling-buffer blocks with a stride",
          hint="a rolling buffer: add each document and an end-of-text token, emit a block whenever the buffer "
               "is full and slide it by the stride; at the end emit what is left only if no block covered it "
               "yet; reject bad sizes",
          hint2="a list as the buffer, list.extend, yield buf[:block_size], del buf[:stride], raise ValueError")
def check_make_blocks(make_blocks: Callable) -> str:
    for docs, block_size, stride in BLOCK_CASES:
        want = list(streaming.make_blocks(docs, block_size, stride, EOS))
        got = make_blocks((list(d) for d in docs), block_size, stride, EOS)  # a generator, like a real stream
        expect_equal([list(b) for b in got], want, f"make_blocks({docs}, block_size={block_size}, stride={stride})")
    for block_size, stride in [(4, 0), (4, 5), (1, 1), (4, -1)]:
        if not _raises_value_error(lambda b=block_size, s=stride: make_blocks([[1, 2, 3]], b, s, EOS)):
            raise AssertionError(f"make_blocks(..., block_size={block_size}, stride={stride}) should raise ValueError")
    return f"{len(BLOCK_CASES)} streams blocked like the reference; bad sizes raise ValueError"


# ---------------------------------------------------------------------------------------------- 05.3

LOSS_CASES = [  # (losses, n_tokens)
    ([2.0, 2.0, 2.0], None),
    ([1.0, 3.0], None),
    ([1.0, 3.0], [3, 1]),  # token-weighted: (3*1 + 1*3) / 4 = 1.5
    ([0.5], [7]),
    (torch.tensor([2.5, 0.25, 1.0]), None),
    ([10.8, 10.9, 10.7, 10.85], [127, 127, 127, 40]),
]


@exercise("05.3", title="perplexity from losses",
          hint="perplexity is the exponential of the mean loss per token; with token counts each loss counts as "
               "often as the tokens behind it; with no losses there is nothing to average",
          hint2="math.exp of a weighted mean: sum of loss times count over the sum of counts; raise ValueError")
def check_perplexity(perplexity_from_losses: Callable) -> str:
    for losses, n_tokens in LOSS_CASES:
        want = streaming.perplexity_from_losses(losses, n_tokens)
        got = perplexity_from_losses(losses, n_tokens) if n_tokens is not None else perplexity_from_losses(losses)
        if not isinstance(got, (float, int)) and not (torch.is_tensor(got) and got.numel() == 1):
            raise AssertionError(f"perplexity_from_losses should return a number, got {type(got).__name__}")
        if not math.isclose(float(got), want, rel_tol=1e-6):
            raise AssertionError(f"perplexity_from_losses({short(losses)}, n_tokens={n_tokens}): "
                                 f"expected {want:.6g}, got {float(got):.6g}")
    if not _raises_value_error(lambda: perplexity_from_losses([])):
        raise AssertionError("perplexity_from_losses([]) should raise ValueError (nothing was evaluated)")
    return f"{len(LOSS_CASES)} cases match exp(mean loss), weighted and unweighted"
