"""The classifier's data: tables of labelled texts, read and checked; texts and labels as Python users have
them; and datasets of word-piece ids or cached features, batched as NumPy arrays."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...core.backends import plain_tokenizer
from ...core.batching import pad_batch
from ...core.config import TrainConfig
from ...core.data import (
    TEXT_COLUMNS,
    as_frame,
    as_texts,
    cell_text,
    clean_cells,
    column_of,
    find_column,
    is_list_cell,
    read_table,
    refuse_rows,
)
from ...core.errors import BertLSTMError
from ...core.task import RunData
from .checks import LABEL_COLUMNS
from .config import ClassifyData, ModelConfig
from .labels import Labels, merged

if TYPE_CHECKING:
    from ...core.feature_cache import FeatureStore


def load_labelled(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    label_separator: str | None = None,
) -> tuple[list[str], list[Any]]:
    """Texts and their labels from a data file: one label per text (as a string), or, with
    ``label_separator`` (multi-label), a list of label names per text, from cells joined by the separator or,
    in JSON Lines and Parquet, list-valued cells."""
    frame = read_table(path)
    t_col = find_column(frame, text_column, TEXT_COLUMNS, "text", str(path))
    l_col = find_column(frame, label_column, LABEL_COLUMNS, "label", str(path))
    if t_col == l_col:
        raise BertLSTMError(f"{path}: text and label cannot be the same column ({t_col!r})")
    texts = clean_cells(column_of(frame, t_col), "text", str(path))
    if label_separator is not None:
        return texts, label_lists(column_of(frame, l_col), label_separator, str(path))
    if any(is_list_cell(v) for v in frame[l_col].tolist()):
        raise BertLSTMError(
            f"{path}: the {l_col!r} column holds lists of labels; for several labels per text set `multi_label`",
            "multi_label",
        )
    merged(frame[l_col].tolist(), str(path))  # before the cells lose their outer spaces
    return texts, clean_cells(column_of(frame, l_col), "label", str(path))  # class names: Labels.clean


def label_lists(values: pd.Series, separator: str, path: str) -> list[list[str]]:
    """Multi-label cells, joined (``"joy,surprise"``) or lists (``["joy", "surprise"]``), as lists of names."""
    lists: list[list[str]] = []
    bad: list[int] = []
    for i, cell in enumerate(values.tolist()):
        names: list[str] = []
        if is_list_cell(cell):
            parts = [cell_text(v) for v in cell]
            names = [p for p in parts if p is not None] if all(parts) else []
        else:
            text = cell_text(cell)
            names = split_label_lists([text], separator)[0] if text else []
        if not names:
            bad.append(i)
        lists.append(names)
    refuse_rows(bad, "labels", path, values.attrs.get("kind", "csv"))
    return lists


def texts_and_labels(
    data: Any, labels: Any = None, text_column: str | None = None, label_column: str | None = None, where: str = "data"
) -> tuple[list[str], Any]:
    """Texts and labels: ``data`` with ``labels`` beside it, or a table (DataFrame, ``datasets.Dataset``) that
    holds both, its label column named by ``label_column`` or found (label, labels, ...)."""
    frame = as_frame(data)
    if labels is None and frame is None:  # scikit-learn's words, which its checks look for
        raise BertLSTMError(f"{where}: requires y to be passed, but the target y is None: give labels")
    texts = as_texts(data, text_column, where)
    if labels is None and frame is not None:
        column = find_column(frame, label_column, LABEL_COLUMNS, "label", f"{where} (a table)")
        labels = frame[column].tolist()
    if isinstance(labels, pd.Series | pd.DataFrame):
        labels = labels.to_numpy()
    if len(labels) != len(texts):
        raise BertLSTMError(f"{where}: {len(texts)} texts but {len(labels)} labels")
    return texts, labels


def split_label_lists(labels: Sequence[str], separator: str) -> list[list[str]]:
    """Multi-label cells such as ``"joy,surprise"`` as lists of names (blank parts dropped)."""
    return [[part.strip() for part in cell.split(separator) if part.strip()] for cell in labels]


def split_dev(
    texts: list[str], labels: list[Any], fraction: float, seed: int
) -> tuple[list[str], list[str], list[Any], list[Any]]:
    """A stratified train/dev split (plain random where a class is too small to stratify)."""
    from sklearn.model_selection import train_test_split  # scikit-learn, loaded only to split off a dev set

    keys = [str(label) for label in labels]  # a label set (multi-label) stratifies as one key
    counts = pd.Series(keys).value_counts()
    stratify = keys if counts.min() >= 2 and int(len(labels) * fraction) >= len(counts) else None
    try:
        tr_t, dv_t, tr_l, dv_l = train_test_split(
            texts, labels, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError as err:
        raise BertLSTMError(f"cannot split off a dev set ({err}); give a dev set") from None
    return list(tr_t), list(dv_t), list(tr_l), list(dv_l)


def read_run_data(data: ClassifyData, model: ModelConfig, training: TrainConfig) -> RunData:
    """A run's tables read, their labels checked (at least two classes; dev and test labels the model can
    know; as many class weights as classes), before any model is built."""
    separator = data.label_separator if model.multi_label else None

    def read(path: str | None) -> tuple[list[str], list[Any]] | None:
        return None if path is None else load_labelled(path, data.text_column, data.label_column, separator)

    train, dev, test = read(data.train), read(data.dev), read(data.test)
    if train is None:
        raise BertLSTMError("a training run needs `train` data")
    with warnings.catch_warnings():  # the estimator says them, once, when it learns the labels
        warnings.simplefilter("ignore")
        labels = Labels.from_training(Labels.clean(train[1], model.multi_label, data.train or ""), model.multi_label)
        labels.class_weights(training.class_weight, [])  # as many weights as classes
        for path, part in ((data.dev, dev), (data.test, test)):
            if path and part is not None:
                labels.check_known(Labels.clean(part[1], model.multi_label, path), path)
    return RunData(train, dev, test)


# --- datasets ---------------------------------------------------------------------------------------------
def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Word-piece ids per text with a transformers tokenizer, cut at ``max_length``."""
    cut = TextCut(max_length)
    return cut(plain_tokenizer(tokenizer, cut.truncation), texts)


@dataclass(frozen=True)
class TextCut:
    """How a text becomes at most ``max_length`` word-piece ids (special tokens included; not padded: padding is
    per batch): cut at its end (``truncate``), or its head and tail kept (``head-tail``: the first quarter of
    ``max_length`` and the rest from its end, 128 + 382 for 512, the best cut for IMDB in Sun et al. 2019)."""

    max_length: int
    long_text: str = "truncate"

    @property
    def truncation(self) -> int | None:
        """Where the tokenizer itself cuts: at ``max_length`` when truncating; head-tail needs every piece."""
        return self.max_length if self.long_text == "truncate" else None

    def __call__(self, tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
        """``tokenizer``: a ``tokenizers.Tokenizer`` that cuts at :attr:`truncation`."""
        # without the pieces' character offsets, which nothing here reads: twice as fast (60 -> 32 ms, SST-2 dev)
        ids = [encoding.ids for encoding in tokenizer.encode_batch_fast(list(texts))]
        return ids if self.long_text == "truncate" else [self.head_tail(row) for row in ids]

    def head_tail(self, ids: list[int]) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        head = self.max_length // 4
        tail = self.max_length - 2 - head
        return [ids[0], *ids[1 : 1 + head], *ids[len(ids) - 1 - tail : -1], ids[-1]]  # [CLS] head tail [SEP]


def with_labels(batch: dict[str, np.ndarray], items: list[tuple[Any, Any]]) -> dict[str, np.ndarray]:
    """Add the items' targets (class ids, or 0/1 rows when multi-label) to a batch, unless unlabelled (None)."""
    if items[0][1] is not None:
        batch["labels"] = np.asarray([label for _, label in items], dtype=np.int64)
    return batch


class TokenDataset:
    """Tokenized texts with optional targets; :meth:`collate` pads a batch to its longest text.

    ``pad_to`` pads every batch to a fixed length instead (how the original recipe ran; only for comparison).
    """

    def __init__(
        self, input_ids: list[list[int]], labels: list[Any] | None = None, pad_id: int = 0, pad_to: int | None = None
    ) -> None:
        self.input_ids, self.labels, self.pad_id, self.pad_to = input_ids, labels, pad_id, pad_to
        self.lengths = [len(ids) for ids in input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> tuple[list[int], Any]:
        return self.input_ids[i], (self.labels[i] if self.labels is not None else None)

    def collate(self, items: list[tuple[list[int], Any]]) -> dict[str, np.ndarray]:
        input_ids, attention_mask = pad_batch([ids for ids, _ in items], self.pad_id, self.pad_to)
        return with_labels({"input_ids": input_ids, "attention_mask": attention_mask}, items)


class FeatureDataset:
    """Cached features (a :class:`~bertlstm.core.feature_cache.FeatureStore`) with optional targets;
    :meth:`collate` pads a batch to its longest text."""

    def __init__(self, store: FeatureStore, labels: list[Any] | None = None) -> None:
        self.store, self.labels = store, labels
        self.lengths = store.lengths

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Any]:
        return self.store[i], (self.labels[i] if self.labels is not None else None)

    def collate(self, items: list[tuple[np.ndarray, Any]]) -> dict[str, np.ndarray]:
        lengths = [len(f) for f, _ in items]
        features = np.zeros((len(items), max(lengths), self.store.hidden), dtype=np.float32)  # (B, T, H)
        for row, (f, _) in enumerate(items):
            features[row, : len(f)] = f
        return with_labels({"features": features, "lengths": np.asarray(lengths, dtype=np.int64)}, items)
