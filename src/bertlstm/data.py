"""Reading labelled text files, checking them, tokenizing, and length-grouped batches padded per batch."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .errors import BertLSTMError, missing_package
from .labels import tidy

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")
_READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def file_kind(path: str | Path) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet``, by extension (``.gz`` allowed), or ``hf`` for a Hugging Face
    dataset named ``hf:NAME[:SPLIT]``; a clear error otherwise."""
    if str(path).startswith("hf:"):
        return "hf"
    path = Path(path)
    if path.is_dir():
        raise BertLSTMError(f"{path} is a folder, not a data file")
    if not path.is_file():
        raise BertLSTMError(f"file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = _READERS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise BertLSTMError(f"{path}: unknown file type; use .csv, .tsv, .jsonl, .json or .parquet")
    return kind


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV, JSON Lines or Parquet file (by extension; ``.gz`` allowed) as strings.

    ``frame.attrs["kind"]`` says which, so that messages can name rows the way the file counts them.
    """
    frames = list(iter_tables(path, chunk_rows=None))
    return frames[0]


def load_hf_dataset(spec: str) -> Any:
    """``hf:NAME[:SPLIT]`` (split ``train`` by default) through the ``datasets`` library: a Hub id where the
    Hub is reachable, or a local dataset folder."""
    name, _, split = spec.removeprefix("hf:").rpartition(":")
    if not name or "/" in split:  # no split given (a ":" inside a path is part of the name)
        name, split = spec.removeprefix("hf:"), "train"
    try:
        import datasets
    except ImportError as err:
        raise missing_package(err, "datasets") from None
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, no such dataset or split: datasets raises many kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        message = f"could not load dataset {name!r}, split {split!r}, with the datasets library: {first}"
        raise BertLSTMError(message) from None


def iter_tables(path: str | Path, chunk_rows: int | None = 50_000) -> Iterator[pd.DataFrame]:
    """The file in pieces of ``chunk_rows`` rows (all at once when None), so that a large file is never held
    in memory whole. Each piece's ``attrs`` hold ``kind`` and ``start`` (the index of its first row)."""
    kind = file_kind(path)
    start = 0
    try:
        for frame in _pieces(Path(path), kind, chunk_rows):
            frame.attrs.update(kind=kind, start=start)
            start += len(frame)
            yield frame
    except BertLSTMError:
        raise
    except UnicodeDecodeError:
        raise BertLSTMError(f"{path}: not valid UTF-8 text; re-save the file as UTF-8") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BertLSTMError(f"{path}: could not read as {kind}: {first}") from None
    if start == 0:
        raise BertLSTMError(f"{path}: no rows")


def _pieces(path: Path, kind: str, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    if kind == "hf":
        dataset = load_hf_dataset(str(path))
        yield from dataset.to_pandas(batched=True, batch_size=chunk_rows) if chunk_rows else [dataset.to_pandas()]
        return
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise missing_package(err, "parquet") from None

        if chunk_rows is None:
            yield pd.read_parquet(path)
        else:
            yield from (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows))
        return
    if kind == "jsonl":
        reader = pd.read_json(path, lines=True, dtype=False, chunksize=chunk_rows)
    else:
        sep = "\t" if kind == "tsv" else ","
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8", chunksize=chunk_rows)
    if chunk_rows is None:
        yield reader
    else:
        with reader:
            yield from reader


def find_column(frame: pd.DataFrame, wanted: str | None, candidates: Sequence[str], what: str, path: str) -> str:
    """The column named ``wanted``, or the first of ``candidates`` present (case-insensitive)."""
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted not in columns:
            raise BertLSTMError(f"{path}: no {what} column {wanted!r}; columns are: {', '.join(columns)}")
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise BertLSTMError(
        f"{path}: cannot tell which column holds the {what}; columns are: {', '.join(columns)}. "
        f"Name it with `{what}_column`"
    )


def _cell_text(value: Any) -> str | None:
    """A cell as stripped text: strings, integers and finite numbers (``1.0`` reads as ``1``); None when empty
    or not text (missing values, booleans, nested values)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None
        value = int(value) if float(value).is_integer() else float(value)
    if not isinstance(value, str | int | float | np.integer):
        return None
    text = str(value).strip()
    return text or None


def _is_list(value: Any) -> bool:
    """A list-valued cell, as JSON Lines (list) and Parquet (NumPy array) give them."""
    return isinstance(value, (list, tuple, np.ndarray))


def _refuse_rows(bad: list[int], what: str, path: str, kind: str, start: int = 0) -> None:
    """One error naming the first bad rows (``start`` + index) the way the file counts them."""
    if bad:
        first_row = start + (2 if kind in ("csv", "tsv") else 1)  # CSV and TSV start with a header line
        where = "file line" if kind in ("csv", "tsv", "jsonl") else "row"
        rows = ", ".join(str(i + first_row) for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise BertLSTMError(f"{path}: empty or non-text {what} in {len(bad)} row(s) ({where} {rows}{more})")


def _clean_cells(values: pd.Series, what: str, path: str) -> list[str]:
    """Cells as stripped strings; empty or non-text cells are an error naming the first rows."""
    cells = [_cell_text(v) for v in values.tolist()]
    bad = [i for i, v in enumerate(cells) if v is None]
    _refuse_rows(bad, what, path, values.attrs.get("kind", "csv"), values.attrs.get("start", 0))
    return [cell for cell in cells if cell is not None]  # every cell, now that none is empty


def _label_lists(values: pd.Series, separator: str, path: str) -> list[list[str]]:
    """Multi-label cells, joined (``"joy,surprise"``) or lists (``["joy", "surprise"]``), as lists of names."""
    lists: list[list[str]] = []
    bad: list[int] = []
    for i, cell in enumerate(values.tolist()):
        names: list[str] = []
        if _is_list(cell):
            parts = [_cell_text(v) for v in cell]
            names = [p for p in parts if p is not None] if all(parts) else []
        else:
            text = _cell_text(cell)
            names = split_label_lists([text], separator)[0] if text else []
        if not names:
            bad.append(i)
        lists.append(names)
    _refuse_rows(bad, "labels", path, values.attrs.get("kind", "csv"))
    return lists


def column_texts(frame: pd.DataFrame, column: str, where: str) -> list[str]:
    """The texts of one column of a table read by :func:`iter_tables` (bad cells named by file line)."""
    return _clean_cells(_column(frame, column), "text", where)


def load_texts(path: str | Path, text_column: str | None = None) -> list[str]:
    return [text for chunk in iter_texts(path, text_column, chunk_rows=None) for text in chunk]


def iter_texts(
    path: str | Path, text_column: str | None = None, chunk_rows: int | None = 50_000
) -> Iterator[list[str]]:
    """The texts of a file, ``chunk_rows`` at a time (the column is found in the first piece)."""
    column = text_column
    for frame in iter_tables(path, chunk_rows):
        column = find_column(frame, column, TEXT_COLUMNS, "text", str(path))
        yield _clean_cells(_column(frame, column), "text", str(path))


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
    texts = _clean_cells(_column(frame, t_col), "text", str(path))
    if label_separator is not None:
        return texts, _label_lists(_column(frame, l_col), label_separator, str(path))
    if any(_is_list(v) for v in frame[l_col].tolist()):
        raise BertLSTMError(
            f"{path}: the {l_col!r} column holds lists of labels; for several labels per text set `multi_label`",
            "multi_label",
        )
    return texts, tidy(_clean_cells(_column(frame, l_col), "label", str(path)), str(path))


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    column = frame[name]
    column.attrs.update(kind=frame.attrs.get("kind", "csv"), start=frame.attrs.get("start", 0))
    return column


# --- what Python users have: lists, arrays, Series, DataFrames, datasets ---------------------------------
def as_frame(data: Any) -> pd.DataFrame | None:
    """A pandas DataFrame for a DataFrame or a Hugging Face ``datasets.Dataset``; None for anything else."""
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas") and hasattr(data, "column_names"):  # datasets.Dataset, without importing it
        return data.to_pandas()
    return None


def as_texts(data: Any, text_column: str | None = None, where: str = "texts") -> list[str]:
    """Texts from a string, a list, an array (1-D, or one column), a Series, a DataFrame (its text column:
    ``text_column`` or one named text, sentence, ...) or a ``datasets.Dataset``."""
    if isinstance(data, str):
        return [data]
    frame = as_frame(data)
    if frame is not None:
        column = find_column(frame, text_column, TEXT_COLUMNS, "text", f"{where} (a table)")
        cells = frame[column].reset_index(drop=True)
        cells.attrs.update(kind="table", start=0)  # rows are counted from 1, as a table shows them
        return _clean_cells(cells, "text", where)
    if isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if isinstance(data, np.ndarray) and data.ndim != 1:
        raise BertLSTMError(f"{where}: an array of texts must be 1-D (or one column), not of shape {data.shape}")
    texts = list(data)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise BertLSTMError(f"{where}: every text must be a string; item {bad[0]} is {texts[bad[0]]!r}")
    return texts


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
    from sklearn.model_selection import train_test_split

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


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Word-piece ids per text, truncated to ``max_length``, not padded (padding is per batch)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return encoded["input_ids"]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> tuple[Tensor, Tensor]:
    """Pad to the longest sequence of this batch (or to ``length``): ids (B, T) and attention mask (B, T)."""
    longest = length or max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


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


class TokenDataset(torch.utils.data.Dataset):
    """Tokenized texts with optional class ids; :meth:`collate` pads a batch to its longest text.

    ``pad_to`` pads every batch to a fixed length instead (how the original recipe ran; only for comparison).
    """

    def __init__(
        self, input_ids: list[list[int]], labels: list[Any] | None = None, pad_id: int = 0, pad_to: int | None = None
    ) -> None:
        self.input_ids = input_ids
        self.labels = labels
        self.pad_id = pad_id
        self.pad_to = pad_to

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> tuple[list[int], Any]:
        return self.input_ids[i], (self.labels[i] if self.labels is not None else None)

    def collate(self, items: list[tuple[list[int], Any]]) -> dict[str, Tensor]:
        input_ids, attention_mask = pad_batch([ids for ids, _ in items], self.pad_id, self.pad_to)
        return with_labels({"input_ids": input_ids, "attention_mask": attention_mask}, items)


def with_labels(batch: dict[str, Tensor], items: list[tuple[Any, Any]]) -> dict[str, Tensor]:
    """Add the items' targets (class ids, or 0/1 rows when multi-label) to a batch, unless unlabelled (None)."""
    if items[0][1] is not None:
        batch["labels"] = torch.tensor([label for _, label in items], dtype=torch.long)
    return batch
