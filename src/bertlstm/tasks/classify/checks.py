"""A classifier's files checked from their names and first lines, before pandas or PyTorch is imported: the
data files' columns and the predictions' output format."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import BertLSTMError, needs_packages
from ...core.peek import TEXT_COLUMNS, check_columns, file_kind
from .config import ClassifyData

LABEL_COLUMNS = ("label", "labels", "category", "class", "target")
OUTPUT_KINDS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def check_file(path: str, data: ClassifyData, labelled: bool) -> None:
    """A table this task reads, with its text column (and, ``labelled``, its label column)."""
    wanted = {"text": (data.text_column, TEXT_COLUMNS)}
    if labelled:
        wanted["label"] = (data.label_column, LABEL_COLUMNS)
    check_columns(path, wanted)


def output_kind(path: str | Path | None, input_path: str | None) -> str:
    """How predictions of ``input_path`` are written: by the output's extension, or CSV on the terminal."""
    if input_path is not None:
        file_kind(input_path)  # a table this can read
    if path is None:
        return "csv"
    kind = OUTPUT_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise BertLSTMError(f"predictions output {path}: use a {', '.join(OUTPUT_KINDS)} file name", "output")
    if kind == "parquet":
        needs_packages(("pyarrow",), "parquet")
    return kind
