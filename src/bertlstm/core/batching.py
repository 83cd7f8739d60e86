"""Batches of word-piece ids: length-grouped, padded to their own longest row, as NumPy arrays (whatever needs
tensors converts them, so that onnxruntime runs without torch)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pad to the longest sequence of this batch (or to ``length``): ids (B, T) and attention mask (B, T),
    int64."""
    longest = length or max(len(s) for s in sequences)
    input_ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = seq
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def windows_batch(windows: Sequence[Any], pad_id: int, cached: bool) -> dict[str, np.ndarray]:
    """Encoder windows as a batch: word-piece ids padded, with their mask (Nw, T); or, ``cached``, each window's
    rows from the feature cache (an array (rows, D): its pieces' states, or one vector) as features (Nw, T, D)
    with their row counts (Nw,)."""
    if not cached:
        input_ids, attention_mask = pad_batch(windows, pad_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    features = np.zeros((len(windows), max(len(w) for w in windows), windows[0].shape[1]), dtype=np.float32)
    for row, window in enumerate(windows):
        features[row, : len(window)] = window
    return {"features": features, "lengths": np.asarray([len(w) for w in windows], dtype=np.int64)}


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of similar length, longest first: for forward-only passes where order does not matter."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class LengthGroupedBatches:
    """Shuffled batches of similar-length texts, so that per-batch padding wastes little compute.

    Each epoch shuffles the data, sorts it by length inside windows of ``window`` batches, cuts batches
    and shuffles their order: batches stay random while their rows have similar lengths. The order
    depends only on ``seed`` and ``epoch`` (set :attr:`epoch` before iterating).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 50) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.window
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=lambda i: self.lengths[i])
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        rng.shuffle(batches)
        return iter(batches)
