"""A model's outputs over a dataset, in length-sorted batches, shared among processes when there are several:
what training scores on dev each epoch. Datasets give NumPy batches; :func:`as_tensors` turns them into
tensors here and in the training loop. Nothing here imports the training loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .batching import sorted_batches
from .distributed import Shard, sharded_rows

Predict = Callable[[Any, Any, int, torch.device], np.ndarray]  # (model, dataset, batch size, device) -> outputs


def as_tensors(batch: dict[str, np.ndarray], device: torch.device | None = None) -> dict[str, Tensor]:
    """A dataset's batch (NumPy arrays: int64 ids, float32 features) as tensors, on ``device`` if given."""
    tensors = {name: torch.from_numpy(array) for name, array in batch.items()}
    return tensors if device is None else {name: t.to(device) for name, t in tensors.items()}


class TensorCollate:
    """A dataset's ``collate`` with tensors out: what a ``DataLoader`` gives the training loop."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, np.ndarray]]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> dict[str, Tensor]:
        return as_tensors(self.collate(items))


def predict_logits(model: Any, dataset: Any, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits (N, C) in dataset order; batches sorted by length so that little goes to padding.

    ``dataset`` is anything with ``lengths``, items and ``collate`` (token ids, or cached features).
    """
    out = np.zeros((len(dataset), model.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for rows in sorted_batches(dataset.lengths, batch_size):
            batch = dataset.collate([(dataset[i][0], None) for i in rows])
            out[rows] = model(**as_tensors(batch, device)).logits.float().cpu().numpy()
    model.train(was_training)
    return out


class RowsView:
    """Some rows of a dataset (``lengths``, items and ``collate``), as :func:`predict_logits` reads them."""

    def __init__(self, dataset: Any, rows: Sequence[int]) -> None:
        self.dataset, self.rows = dataset, list(rows)
        lengths = dataset.lengths
        self.lengths = [lengths[i] for i in self.rows]
        self.collate = dataset.collate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.rows[i]]


def sharded_outputs(
    model: Any, dataset: Any, batch_size: int, device: torch.device, shard: Shard, predict: Predict = predict_logits
) -> np.ndarray:
    """``predict`` (:func:`predict_logits`, or another of its form) over ``dataset``, shared among processes."""
    if shard.world == 1:
        return predict(model, dataset, batch_size, device)
    return sharded_rows(
        dataset.lengths, shard, lambda rows: predict(model, RowsView(dataset, rows), batch_size, device)
    )
