"""Documents cut into windows of word pieces, and the dataset that holds them.

A document's word pieces (no special tokens, never truncated) are cut into windows of ``length`` pieces,
``[CLS]`` and ``[SEP]`` included, consecutive windows sharing ``stride`` pieces; every piece is in a window,
and a document with no pieces is one window of ``[CLS] [SEP]``. The encoder reads each window alone; the
model's LSTM reads the windows' vectors in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.batching import windows_batch


@dataclass(frozen=True)
class Windows:
    """How a document's word pieces become windows (see the module)."""

    length: int  # pieces per window, [CLS] and [SEP] included
    stride: int  # pieces shared by consecutive windows
    cls_id: int
    sep_id: int

    def __call__(self, pieces: Sequence[int]) -> list[list[int]]:
        body = self.length - 2
        return [[self.cls_id, *pieces[start : start + body], self.sep_id] for start in self.starts(len(pieces))]

    def starts(self, count: int) -> list[int]:
        """Where each window of ``count`` pieces starts among them."""
        body, starts = self.length - 2, [0]
        while starts[-1] + body < count:
            starts.append(starts[-1] + body - self.stride)
        return starts


def document_pieces(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text's word pieces, whole: ``tokenizer`` is a ``tokenizers.Tokenizer`` that does not truncate."""
    return [encoding.ids for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def first_and_last(windows: list[list[int]], most: int | None) -> list[list[int]]:
    """At most ``most`` windows: the first half and the last half of them (where a review's verdict sits)."""
    if most is None or len(windows) <= most:
        return windows
    head = (most + 1) // 2
    return windows[:head] + windows[len(windows) - (most - head) :]


class DocumentDataset:
    """Documents as windows of word-piece ids, or as cached window features (``store``: its rows for each
    window, in order), with optional targets; :meth:`collate` builds a batch (see there)."""

    def __init__(
        self, documents: list[list[list[int]]], labels: list[Any] | None, pad_id: int, store: Any | None = None
    ) -> None:
        self.documents, self.labels, self.pad_id, self.store = documents, labels, pad_id, store
        firsts = np.cumsum([0] + [len(windows) for windows in documents])
        self.window_ids = [range(firsts[i], firsts[i + 1]) for i in range(len(documents))]
        self.lengths = [sum(len(w) for w in windows) for windows in documents]  # what a document costs the encoder

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, i: int) -> tuple[list[Any], Any]:
        windows = self.documents[i] if self.store is None else [self.store[j] for j in self.window_ids[i]]
        return windows, (self.labels[i] if self.labels is not None else None)

    def collate(self, items: list[tuple[list[Any], Any]]) -> dict[str, np.ndarray]:
        """The batch's windows, ids and mask (Nw, T) or cached features (Nw, T, D) with their rows (Nw,); per
        document (B, C) the rows of its windows among them (0 past its end) and its window count (B,); and the
        targets, when labelled."""
        windows = [w for ws, _ in items for w in ws]
        counts = np.asarray([len(ws) for ws, _ in items], dtype=np.int64)
        doc_windows = np.zeros((len(items), int(counts.max())), dtype=np.int64)
        for row, start in enumerate(np.cumsum(counts) - counts):
            doc_windows[row, : counts[row]] = np.arange(start, start + counts[row])
        batch = windows_batch(windows, self.pad_id, cached=self.store is not None)
        batch.update(doc_windows=doc_windows, doc_counts=counts)
        if items[0][1] is not None:
            batch["labels"] = np.asarray([label for _, label in items], dtype=np.int64)
        return batch
