"""Benchmark: Lab 07 Part B's fine-tuning recipe vs the original assignment's, in training samples/s.

Both recipes train the same GPT2ForSequenceClassification (random weights from `GPT2Config()`, the GPT-2 small
shape; no hub) with the 🤗 `Trainer`, in this process and on the same device, on the same sentences:

    original: fp32, eager attention, batch 8, every sentence padded to --max-length (fixed padding)
    lab:      bf16 autocast (fp16 on GPUs without bf16, fp32 on CPU), SDPA attention, batch 32,
              dynamic padding (DataCollatorWithPadding: each batch padded to its longest sentence)

The sentences are token-id sequences whose lengths follow SST-2's training set (median ~9 GPT-2 tokens, a long tail
up to --max-length; the content does not matter for speed); `--data sst2` uses the real `sst2` asset of the active
profile instead (SST-2 in `full`, Rotten Tomatoes in `offline`), tokenized with the vendored GPT-2 BPE. The first
--warmup steps of each recipe are not timed. The script prints samples/s of each and their ratio.

Run:

    python benchmarks/classify_finetune.py --small            # CPU, tiny GPT-2, < 1 minute
    python benchmarks/classify_finetune.py                    # GPU: the GPT-2 small shape
    python benchmarks/classify_finetune.py --data sst2        # the same on the lab's sentences (needs the hub)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorWithPadding,
    GPT2Config,
    GPT2ForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from labsupport.bpe import hf_gpt2_tokenizer  # noqa: E402
from labsupport.classify import precision_kwargs  # noqa: E402
from labsupport.runtime import get_device  # noqa: E402

EOS = 50256  # GPT-2's <|endoftext|>, used as the pad token
TINY = dict(n_layer=2, n_head=2, n_embd=64)  # --small


class StepTimer(TrainerCallback):
    """Wall time from the end of step `warmup` to the end of training (CUDA synchronised)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = self._now()

    def on_train_end(self, args, state, control, **kwargs):
        self.end = self._now()


def sentence_lengths(n: int, max_length: int, seed: int = 0) -> np.ndarray:
    """Token counts shaped like SST-2 train in GPT-2 tokens: log-normal, median 9, mean ~12, clipped."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(9), 0.75, size=n)), 2, max_length).astype(int)


def make_examples(args) -> list[list[int]]:
    if args.data == "sst2":
        from labsupport import assets

        sentences = list(assets.load_dataset("sst2", "train")["sentence"])[: args.examples]
        return hf_gpt2_tokenizer()(sentences, truncation=True, max_length=args.max_length)["input_ids"]
    rng = np.random.default_rng(1)
    return [rng.integers(0, EOS, size=n).tolist() for n in sentence_lengths(args.examples, args.max_length)]


def run(recipe: str, examples: list[list[int]], args, device: torch.device) -> dict[str, float]:
    lab = recipe == "lab"
    batch = args.batch_size if lab else 8
    labels = [i % 2 for i in range(len(examples))]
    if lab:  # unpadded; the collator pads each batch
        data = Dataset.from_dict({"input_ids": examples, "attention_mask": [[1] * len(x) for x in examples],
                                  "label": labels})
        tokenizer = hf_gpt2_tokenizer()
        tokenizer.pad_token = tokenizer.eos_token
        collator = DataCollatorWithPadding(tokenizer)
    else:  # padding="max_length" at tokenization time
        L = args.max_length
        data = Dataset.from_dict({"input_ids": [x + [EOS] * (L - len(x)) for x in examples],
                                  "attention_mask": [[1] * len(x) + [0] * (L - len(x)) for x in examples],
                                  "labels": labels})
        collator = default_data_collator
    real_tokens = sum(len(x) for x in examples) / len(examples)

    torch.manual_seed(0)
    config = GPT2Config(num_labels=2, pad_token_id=EOS, **(TINY if args.small else {}))
    model = GPT2ForSequenceClassification._from_config(config, attn_implementation="sdpa" if lab else "eager")
    precision = precision_kwargs(device) if lab else {"bf16": False, "fp16": False}
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch,
                                  learning_rate=3e-5, save_strategy="no", eval_strategy="no", logging_strategy="no",
                                  report_to="none", disable_tqdm=True, use_cpu=device.type == "cpu", seed=0,
                                  **precision)
        timer = StepTimer(args.warmup)
        Trainer(model=model, args=targs, train_dataset=data, data_collator=collator, callbacks=[timer]).train()
    seconds = timer.end - timer.start
    samples_per_s = args.steps * batch / seconds
    precision_name = "bf16" if precision["bf16"] else "fp16" if precision["fp16"] else "fp32"
    print(f"{recipe:>8}: {precision_name}, {'sdpa' if lab else 'eager'}, batch {batch}, "
          f"{'dynamic padding' if lab else f'padded to {args.max_length}'}: {samples_per_s:8.1f} samples/s "
          f"({real_tokens * samples_per_s:,.0f} real tokens/s)")
    return {"samples_per_s": samples_per_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny GPT-2 on CPU, < 1 minute")
    parser.add_argument("--device", default=None, help="default: cpu with --small, else cuda > mps > cpu")
    parser.add_argument("--data", choices=["synthetic", "sst2"], default="synthetic")
    parser.add_argument("--examples", type=int, default=None, help="sentences (default 20,000; --small 2,000)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per recipe (default 100; --small 10)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=32, help="the lab recipe's batch size")
    parser.add_argument("--max-length", type=int, default=128, help="truncation length; the original pads to it")
    args = parser.parse_args(argv)
    args.examples = args.examples or (2_000 if args.small else 20_000)
    args.steps = args.steps or (10 if args.small else 100)
    device = torch.device(args.device) if args.device else (torch.device("cpu") if args.small else get_device())
    print(f"device {device}, model {'tiny GPT-2 ' + str(TINY) if args.small else 'GPT-2 small shape (124M)'}, "
          f"{args.examples:,} {args.data} sentences, {args.steps} timed steps per recipe")
    examples = make_examples(args)
    original = run("original", examples, args, device)
    lab = run("lab", examples, args, device)
    print(f"speed-up (samples/s, lab / original): {lab['samples_per_s'] / original['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
