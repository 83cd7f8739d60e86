"""How close the frozen encoder pass comes to the machine's limit, and how little goes to padding.

    python bench/encoder_speed.py            # SST-2 train, default encoder, on this machine's CPU threads

1. Padding: the fraction of padded positions over all of SST-2 train (67,349 sentences) for the training
   batches (length-grouped, 32), the encoder-only batches (sorted by length, --encode-batch-size) and, for
   comparison, padding everything to 128.
2. FLOP/s: the encoder pass (inference mode, sorted batches) over --n texts, counted as
   2 x non-embedding parameters per token plus attention (4 x T^2 x H per layer and sequence), against a plain
   fp32 matmul (--matmul-n cubed) timed in the same run. "useful" counts real tokens only; "executed" counts
   the padded positions too.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from bertlstm import BertLSTMModel, ModelConfig
from bertlstm.core.batching import LengthGroupedBatches, pad_batch, sorted_batches
from bertlstm.core.data import load_texts
from bertlstm.core.encoders import load_encoder
from bertlstm.tasks.classify.data import tokenize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def padded_fraction(lengths: list[int], batches: list[list[int]], fixed: int | None = None) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    total = sum(len(b) * (fixed or max(lengths[i] for i in b)) for b in batches)
    return 1 - real / total


def encoder_flops(config, lengths: list[int], padded_to: list[int]) -> tuple[float, float]:
    """(useful, executed) FLOPs of one forward pass: per layer 2*T*(4H^2 + 2HI) + 4*T^2*H."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = lambda t: 2 * t * (4 * h * h + 2 * h * i) + 4 * t * t * h  # noqa: E731
    useful = layers * sum(per_layer(t) for t in lengths)
    executed = layers * sum(per_layer(t) for t in padded_to)
    return useful, executed


def matmul_rate(n: int, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=8000, help="texts in the timed encoder pass")
    parser.add_argument("--encode-batch-size", type=int, default=256)
    parser.add_argument("--matmul-n", type=int, default=2048)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    encoder, tokenizer = load_encoder("minilm")
    texts = load_texts(args.data / "train.tsv")
    lengths = [len(ids) for ids in tokenize(tokenizer, texts, 128)]
    sampler = LengthGroupedBatches(lengths, 32, seed=0)
    print(f"SST-2 train: {len(texts)} texts, mean {sum(lengths) / len(lengths):.1f} word pieces, max {max(lengths)}")
    print(f"padded positions, training batches (length-grouped, 32): {padded_fraction(lengths, list(sampler)):.1%}")
    sorted_b = sorted_batches(lengths, args.encode_batch_size)
    print(
        f"padded positions, encoder batches (sorted, {args.encode_batch_size}): "
        f"{padded_fraction(lengths, sorted_b):.1%}"
    )
    print(f"padded positions, everything padded to 128: {padded_fraction(lengths, sorted_b, fixed=128):.1%}")

    model = BertLSTMModel(ModelConfig(mode="frozen"), encoder, num_labels=2).eval()
    subset = random.Random(0).sample(range(len(texts)), args.n)
    ids = tokenize(tokenizer, [texts[i] for i in subset], 128)
    batches = sorted_batches([len(x) for x in ids], args.encode_batch_size)
    peak = matmul_rate(args.matmul_n)
    with torch.inference_mode():
        model.encode(*map(torch.from_numpy, pad_batch(ids[:64], 0)))  # warm-up
        start = time.perf_counter()
        padded_to = []
        for rows in batches:
            input_ids, mask = map(torch.from_numpy, pad_batch([ids[i] for i in rows], 0))
            model.encode(input_ids, mask)
            padded_to += [input_ids.size(1)] * len(rows)
        seconds = time.perf_counter() - start
    peak = max(peak, matmul_rate(args.matmul_n))  # before and after: the better of the two
    useful, executed = encoder_flops(encoder.config, [len(x) for x in ids], padded_to)
    print(f"fp32 matmul {args.matmul_n}^3: {peak / 1e9:.1f} GFLOP/s")
    print(
        f"encoder pass over {args.n} texts: {seconds:.2f}s, {args.n / seconds:.0f} texts/s; "
        f"useful {useful / seconds / 1e9:.1f} GFLOP/s ({useful / seconds / peak:.0%} of matmul), "
        f"executed {executed / seconds / 1e9:.1f} GFLOP/s ({executed / seconds / peak:.0%} of matmul)"
    )


if __name__ == "__main__":
    main()
