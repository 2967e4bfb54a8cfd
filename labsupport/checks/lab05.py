"""Self-checks for Lab 05 (streaming perplexity). Each compares the student's function with the reference in
`labsupport.streaming` on small fixed inputs, edge cases included (no model, no data files: milliseconds).
Drivers record the student's results; `compare` matches them with the same calls on the reference."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from labsupport.check import Trace, exercise, short


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
          hint2="an f-string with the label name inside <sentiment_...>",
          reference=["labsupport.streaming:format_example"],
          success=f"{len(EXAMPLES)} examples formatted like the reference")
def drive_format_example(t: Trace, format_example: Callable) -> None:
    for ex in EXAMPLES:
        t.record(f"format_example({short(ex, 90)})", format_example(dict(ex)))


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
          hint2="a list as the buffer, list.extend, yield buf[:block_size], del buf[:stride], raise ValueError",
          reference=["labsupport.streaming:make_blocks"],
          success=f"{len(BLOCK_CASES)} streams blocked like the reference; bad sizes raise ValueError")
def drive_make_blocks(t: Trace, make_blocks: Callable) -> None:
    for docs, block_size, stride in BLOCK_CASES:
        got = make_blocks((list(d) for d in docs), block_size, stride, EOS)  # a generator, like a real stream
        t.record(f"make_blocks({docs}, block_size={block_size}, stride={stride})", [list(b) for b in got])
    for block_size, stride in [(4, 0), (4, 5), (1, 1), (4, -1)]:
        t.record(f"make_blocks(..., block_size={block_size}, stride={stride}) raises ValueError",
                 _raises_value_error(lambda b=block_size, s=stride: make_blocks([[1, 2, 3]], b, s, EOS)))


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
          hint2="math.exp of a weighted mean: sum of loss times count over the sum of counts; raise ValueError",
          reference=["labsupport.streaming:perplexity_from_losses"], options={"rtol": 1e-6, "atol": 0.0},
          success=f"{len(LOSS_CASES)} cases match exp(mean loss), weighted and unweighted")
def drive_perplexity(t: Trace, perplexity_from_losses: Callable) -> None:
    for losses, n_tokens in LOSS_CASES:
        inp = losses.clone() if isinstance(losses, torch.Tensor) else list(losses)
        got = perplexity_from_losses(inp, n_tokens) if n_tokens is not None else perplexity_from_losses(inp)
        if type(got) is torch.Tensor and got.numel() == 1:
            got = got.item()
        t.record(f"perplexity_from_losses({short(losses)}, n_tokens={n_tokens})", float(got) if type(got) is int
                 else got)
    t.record("perplexity_from_losses([]) raises ValueError (nothing was evaluated)",
             _raises_value_error(lambda: perplexity_from_losses([])))
