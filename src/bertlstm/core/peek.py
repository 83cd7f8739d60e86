"""What can be told about a data file from its name and its first line: its kind and its columns.

Commands check their files with these before importing pandas or PyTorch, so that a typo in a file or column
name is an error within a second, not after a model has loaded. Only the standard library is imported here
(and pyarrow for a Parquet file's schema).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import BertLSTMError, first_line, missing_package

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")
JSON_ROWS = 100  # JSON lines read for their keys
_READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def existing_file(path: str | Path) -> Path:
    """An existing file (not a folder): a clear error otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise BertLSTMError(f"{path} is a folder, not a data file")
    if not path.is_file():
        raise BertLSTMError(f"file not found: {path}")
    return path


def file_kind(path: str | Path) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet``, by extension (``.gz`` allowed), or ``hf`` for a Hugging Face
    dataset named ``hf:NAME[:SPLIT]``; a clear error otherwise."""
    if str(path).startswith("hf:"):
        return "hf"
    path = existing_file(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = _READERS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise BertLSTMError(f"{path}: unknown file type; use .csv, .tsv, .jsonl, .json or .parquet")
    return kind


def columns(path: str | Path) -> list[str] | None:
    """The column names of a table file, read from its first line (a Parquet file: its schema); None for a
    Hugging Face dataset, whose columns are known only once it is loaded."""
    kind = file_kind(path)
    if kind == "hf":
        return None
    path = Path(path).expanduser()
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq  # the parquet extra: only for .parquet files
        except ImportError as err:
            raise missing_package(err, "parquet") from None
        try:
            return [str(name) for name in pq.read_schema(path).names]
        except (OSError, ValueError) as err:
            raise BertLSTMError(f"{path}: could not read as parquet: {first_line(err)}") from None
    if kind == "jsonl":  # a row may leave out a key: the columns are those of the first rows together
        names: dict[str, None] = {}
        for number, line in enumerate(first_lines(path, JSON_ROWS), 1):
            try:
                row = json.loads(line)
            except ValueError as err:
                raise BertLSTMError(f"{path}: file line {number} is not JSON: {first_line(err)}") from None
            if not isinstance(row, dict):
                raise BertLSTMError(f"{path}: file line {number} is not a JSON object of named values")
            names.update(dict.fromkeys(map(str, row)))
        return list(names)
    return next(csv.reader([first_data_line(path)], delimiter="\t" if kind == "tsv" else ","), [])


def first_data_line(path: Path) -> str:
    """The first non-blank line of a text file (``.gz`` allowed), as UTF-8; an empty file is an error."""
    return first_lines(path, 1)[0]


def first_lines(path: Path, n: int) -> list[str]:
    """The first ``n`` non-blank lines of a text file (``.gz`` allowed), as UTF-8 (line numbers are counted
    among them); an empty file is an error."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    lines: list[str] = []
    try:
        with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig") as text:
            lines = list(itertools.islice((line for line in text if line.strip()), n))
    except UnicodeDecodeError:
        raise BertLSTMError(f"{path}: not valid UTF-8 text; re-save the file as UTF-8") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise BertLSTMError(f"{path}: could not read: {first_line(err)}") from None
    if not lines:
        raise BertLSTMError(f"{path}: no rows")
    return lines


def pick_column(found: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, path: str) -> str:
    """The column named ``wanted``, or the first of ``candidates`` present (case-insensitive)."""
    names = [str(c) for c in found]
    if wanted is not None:
        if wanted not in names:
            raise BertLSTMError(f"{path}: no {what} column {wanted!r}; columns are: {', '.join(names)}")
        return wanted
    lower = {c.lower(): c for c in names}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise BertLSTMError(
        f"{path}: cannot tell which column holds the {what}; columns are: {', '.join(names)}. "
        f"Name it with `{what}_column`"
    )


def check_columns(path: str | Path, wanted: Mapping[str, tuple[str | None, Sequence[str]]]) -> None:
    """Refuse a table file that lacks a column: ``wanted`` maps what a column holds (``text``) to its given
    name (or None) and the names it is found by otherwise."""
    names = columns(path)
    if names is not None:
        for what, (name, candidates) in wanted.items():
            pick_column(names, name, candidates, what, str(path))
