"""A tagger's files checked from their names and first lines, before pandas or PyTorch is imported: tokens
(CoNLL columns, JSON Lines of tokens) or tables of texts, and the predictions' output format."""

from __future__ import annotations

import json
from pathlib import Path

from ...core.errors import BertLSTMError
from ...core.peek import TEXT_COLUMNS, check_columns, existing_file, file_kind, first_data_line
from .config import TagData

TOKEN_FILES = (".conll", ".txt", ".iob", ".bio")  # column files, one token per line (a .tsv is a table of texts)
TOKEN_OUTPUTS = {**dict.fromkeys(TOKEN_FILES, "conll"), ".jsonl": "jsonl", ".json": "json"}
SPAN_OUTPUTS = {".jsonl": "jsonl", ".json": "json"}


def has_tokens(path: Path) -> bool:
    """A CoNLL-style column file, or a JSON Lines file whose first row has a ``tokens`` list."""
    if path.suffix.lower() in TOKEN_FILES:
        return True
    if path.suffix.lower() not in (".jsonl", ".json") or not path.is_file():
        return False
    try:
        return isinstance(json.loads(first_data_line(path)).get("tokens"), list)
    except (BertLSTMError, ValueError, AttributeError):
        return False


def check_file(path: str, data: TagData, labelled: bool) -> None:
    """Tagged sentences (``labelled``: CoNLL columns, or JSON Lines of tokens and tags), or sentences to tag:
    tokens, or a table with a text column."""
    found = existing_file(path)
    if has_tokens(found):
        return  # read whole, and every line checked, by the task's reader
    if found.suffix.lower() in (".jsonl", ".json"):
        if labelled:
            raise BertLSTMError(f'{path}, first row: expected {{"tokens": [strings], "tags": [strings]}}')
    elif labelled:
        return  # CoNLL columns, whatever the file's extension
    check_columns(path, {"text": (data.text_column, TEXT_COLUMNS)})


def output_kind(path: str | Path | None, input_path: str | None) -> str:
    """Tags of tokens as CoNLL (or JSON), entities of texts as JSON Lines (or JSON); the terminal gets
    CoNLL or JSON Lines."""
    tokens = input_path is not None and has_tokens(Path(input_path).expanduser())
    if input_path is not None and not tokens:
        file_kind(input_path)  # a table of texts this can read
    if path is None:
        return "conll" if tokens else "jsonl"
    kinds = TOKEN_OUTPUTS if tokens else SPAN_OUTPUTS
    kind = kinds.get(Path(path).suffix.lower())
    if kind is None:
        raise BertLSTMError(f"tagger output {path}: use a {', '.join(kinds)} file name", "output")
    return kind
