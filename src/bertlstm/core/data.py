"""Reading text files and tables: what every task's data rests on.

Files are ``.csv``, ``.tsv``, ``.jsonl``, ``.parquet`` (optionally ``.gz``) or ``hf:NAME[:SPLIT]``, read in
chunks so that a large file never sits in memory whole; cells are checked and a bad one is an error naming
its line.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import BertLSTMError, first_line, missing_package
from .hub import check_dataset_reachable
from .peek import TEXT_COLUMNS, file_kind, pick_column


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
    check_dataset_reachable(spec)
    try:
        import datasets  # the datasets extra: only for hf: data
    except ImportError as err:
        raise missing_package(err, "datasets") from None
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, no such dataset or split: datasets raises many kinds
        message = f"could not load dataset {name!r}, split {split!r}, with the datasets library: {first_line(err)}"
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
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError, OSError, EOFError, zlib.error) as err:
        # EOFError and zlib.error: a truncated or corrupt .gz
        raise BertLSTMError(f"{path}: could not read as {kind}: {first_line(err)}") from None
    if start == 0:
        raise BertLSTMError(f"{path}: no rows")


def _pieces(path: Path, kind: str, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    if kind == "hf":
        dataset = load_hf_dataset(str(path))
        yield from dataset.to_pandas(batched=True, batch_size=chunk_rows) if chunk_rows else [dataset.to_pandas()]
        return
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq  # the parquet extra: only for .parquet files
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
    return pick_column(list(frame.columns), wanted, candidates, what, path)


def cell_text(value: Any) -> str | None:
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


def is_list_cell(value: Any) -> bool:
    """A list-valued cell, as JSON Lines (list) and Parquet (NumPy array) give them."""
    return isinstance(value, (list, tuple, np.ndarray))


def refuse_rows(bad: list[int], what: str, path: str, kind: str, start: int = 0) -> None:
    """One error naming the first bad rows (``start`` + index) the way the file counts them."""
    if bad:
        first_row = start + (2 if kind in ("csv", "tsv") else 1)  # CSV and TSV start with a header line
        where = "file line" if kind in ("csv", "tsv", "jsonl") else "row"
        rows = ", ".join(str(i + first_row) for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise BertLSTMError(f"{path}: empty or non-text {what} in {len(bad)} row(s) ({where} {rows}{more})")


def clean_cells(values: pd.Series, what: str, path: str) -> list[str]:
    """Cells as stripped strings; empty or non-text cells, and texts that are not Unicode, are an error naming
    the first rows."""
    cells = [cell_text(v) for v in values.tolist()]
    bad = [i for i, v in enumerate(cells) if v is None]
    refuse_rows(bad, what, path, values.attrs.get("kind", "csv"), values.attrs.get("start", 0))
    texts = [cell for cell in cells if cell is not None]  # every cell, now that none is empty
    check_unicode(texts, path)
    return texts


def not_unicode(texts: Sequence[str]) -> list[int]:
    """The positions of texts that are not Unicode: a lone surrogate (``"\\ud800"``, from JSON or from bytes a
    terminal could not decode) cannot be encoded, nor tokenized."""
    bad = []
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(i)
    return bad


def check_unicode(texts: Sequence[str], where: str) -> None:
    bad = not_unicode(texts)
    if bad:
        raise BertLSTMError(
            f"{where}: text {bad[0]} is not valid Unicode (it holds a lone surrogate, such as \\ud800)"
            + (f", and {len(bad) - 1} more" if len(bad) > 1 else "")
        )


def column_texts(frame: pd.DataFrame, column: str, where: str) -> list[str]:
    """The texts of one column of a table read by :func:`iter_tables` (bad cells named by file line)."""
    return clean_cells(column_of(frame, column), "text", where)


def load_texts(path: str | Path, text_column: str | None = None) -> list[str]:
    return [text for chunk in iter_texts(path, text_column, chunk_rows=None) for text in chunk]


def iter_texts(
    path: str | Path, text_column: str | None = None, chunk_rows: int | None = 50_000
) -> Iterator[list[str]]:
    """The texts of a file, ``chunk_rows`` at a time (the column is found in the first piece)."""
    column = text_column
    for frame in iter_tables(path, chunk_rows):
        column = find_column(frame, column, TEXT_COLUMNS, "text", str(path))
        yield clean_cells(column_of(frame, column), "text", str(path))


def column_of(frame: pd.DataFrame, name: str) -> pd.Series:
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
        return clean_cells(cells, "text", where)
    if isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if isinstance(data, np.ndarray) and data.ndim != 1:
        raise BertLSTMError(f"{where}: an array of texts must be 1-D (or one column), not of shape {data.shape}")
    texts = list(data)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise BertLSTMError(f"{where}: every text must be a string; item {bad[0]} is {texts[bad[0]]!r}")
    check_unicode(texts, where)
    return texts
