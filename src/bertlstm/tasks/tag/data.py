"""The tagger's data: CoNLL and JSON Lines files of tagged sentences, tag schemes, raw text cut into words,
and the rule for tags never seen in training.

Tags are read in IOB1, IOB2 or BIOES (detected, or given) and held as IOB2, the scheme the model learns and
predicts in; spans are the same in every scheme.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.config import TrainConfig
from ...core.errors import BertLSTMError, BertLSTMWarning
from ...core.task import RunData
from .config import TagData, TaggerConfig

SCHEMES = ("iob1", "iob2", "bioes")
_TAG = re.compile(r"O|[BIES]-\S+")
# Raw text into words, roughly as CoNLL-2003 cut them: "U.S.-based", "1,000" and "3.5" stay whole; "Smith's" is
# "Smith" + "'s"; other punctuation stands alone.
_WORD = re.compile(r"(?:\w\.){2,}(?:-\w+)*|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\w+(?:[-.]\w+)*|'\w+|[^\w\s]")


@dataclass
class Sentence:
    """One sentence: its words, their tags (None when unlabelled) and where it came from."""

    tokens: list[str]
    tags: list[str] | None = None
    document: int = 0  # sentences of one document share this number (CoNLL ``-DOCSTART-``)
    line: int = 0  # the file line (1-based) where it starts, for messages
    offsets: list[tuple[int, int]] | None = None  # characters of each word in the raw text it was cut from


# --- reading files -------------------------------------------------------------------------------------
def read_tagged(path: str | os.PathLike, tag_column: int = -1, labelled: bool = True) -> list[Sentence]:
    """Sentences from a CoNLL column file (``token ... tag`` per line, a blank line between sentences,
    ``-DOCSTART-`` between documents) or a JSON Lines file (``{"tokens": [...], "tags": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise BertLSTMError(f"file not found: {path}" if not path.exists() else f"{path} is a folder, not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BertLSTMError(f"{path}: not valid UTF-8 text; re-save the file as UTF-8") from None
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    sentences = _read_jsonl(text, path, labelled) if jsonl else _read_conll(text, path, tag_column, labelled)
    if not sentences:
        raise BertLSTMError(f"{path}: no sentences")
    return sentences


def _read_conll(text: str, path: Path, tag_column: int, labelled: bool) -> list[Sentence]:
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    document, start = 0, 0

    def close() -> None:
        if tokens:
            sentences.append(Sentence(list(tokens), list(tags) if labelled else None, document, start))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        columns = line.split()
        if not columns:
            close()
        elif columns[0] == "-DOCSTART-":
            close()
            document += 1
        else:
            if not tokens:
                start = number
            need = max(tag_column + 1, -tag_column) if labelled else 1
            if len(columns) < need or (labelled and len(columns) < 2):
                raise BertLSTMError(
                    f"{path}, line {number}: expected a token and a tag (column {tag_column}), found "
                    f"{len(columns)} column(s): {line.strip()[:80]!r}"
                )
            tokens.append(columns[0])
            if labelled:
                tags.append(columns[tag_column])
    close()
    return sentences


def _read_jsonl(text: str, path: Path, labelled: bool) -> list[Sentence]:
    sentences = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise BertLSTMError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(row, dict) or not _strings(row.get("tokens")):
            raise BertLSTMError(f'{where}: expected {{"tokens": [strings], "tags": [strings]}}')
        tokens: list[str] = row["tokens"]
        tags: list[str] = row.get("tags") or []
        if not tokens:
            raise BertLSTMError(f"{where}: a sentence with no tokens")
        if labelled:
            if not _strings(row.get("tags")):
                raise BertLSTMError(f'{where}: no "tags" list of strings')
            if len(tags) != len(tokens):
                raise BertLSTMError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
        document = row.get("document", 0)
        sentences.append(Sentence(list(tokens), list(tags) if labelled else None, document, number))
    return sentences


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def split_words(text: str) -> Sentence:
    """Raw text cut into words, each with its character offsets."""
    matches = list(_WORD.finditer(text))
    return Sentence([m.group() for m in matches], offsets=[(m.start(), m.end()) for m in matches])


# --- tag schemes -------------------------------------------------------------------------------------------
def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """``bioes`` if E- or S- tags occur; ``iob1`` if an entity starts with I-; otherwise ``iob2``."""
    tags = [s.tags or [] for s in sentences]
    if any(t[:2] in ("E-", "S-") for row in tags for t in row):
        return "bioes"
    for row in tags:
        for prev, tag in zip(["O", *row], row, strict=False):
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                return "iob1"
    return "iob2"


def to_iob2(sentences: Sequence[Sentence], scheme: str, where: str) -> list[Sentence]:
    """The sentences with their tags in IOB2; a tag outside ``scheme`` is an error naming its line."""
    allowed = {"iob1": "BI", "iob2": "BI", "bioes": "BIES"}[scheme]
    out = []
    for s in sentences:
        tags = s.tags or []
        for i, tag in enumerate(tags):
            if not _TAG.fullmatch(tag) or (tag != "O" and tag[0] not in allowed):
                line = f"line {s.line + i}" if s.line else "sentence"
                raise BertLSTMError(
                    f"{where}, {line}: tag {tag!r} is not in the {scheme.upper()} scheme (O, "
                    + ", ".join(f"{p}-TYPE" for p in allowed)
                    + ")",
                    "tag_scheme",
                )
        converted = []
        for prev, tag in zip(["O", *tags], tags, strict=False):
            kind, name = (tag[0], tag[2:]) if tag != "O" else ("O", "")
            if kind == "O":
                converted.append("O")
            elif kind in "BS" or prev == "O" or prev[2:] != name or prev[0] in "ES":
                converted.append("B-" + name)  # an entity starts here
            else:
                converted.append("I-" + name)
        out.append(Sentence(s.tokens, converted, s.document, s.line, s.offsets))
    return out


def spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entities of an IOB2 tag sequence as (first word, last word + 1, type); a stray I- starts one."""
    found: list[tuple[int, int, str]] = []
    start, kind = None, ""
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == kind):
            found.append((start, i, kind))
            start = None
        if tag != "O" and start is None:
            start, kind = i, tag[2:]
    return found


def as_sentences(data: Any, tags: Any = None, where: str = "data") -> list[Sentence]:
    """Sentences from :class:`Sentence` objects, or token lists with tag lists beside them (or None)."""
    if len(data) and isinstance(data[0], Sentence):
        return list(data)
    if isinstance(data, str) or not all(isinstance(s, list | tuple) for s in data):
        raise BertLSTMError(f"{where}: give sentences as lists of tokens")
    if tags is not None and len(tags) != len(data):
        raise BertLSTMError(f"{where}: {len(data)} sentences but {len(tags)} tag lists")
    out = []
    for i, tokens in enumerate(data):
        if not tokens:
            raise BertLSTMError(f"{where}: sentence {i} has no tokens")
        if tags is not None and len(tags[i]) != len(tokens):
            raise BertLSTMError(f"{where}: sentence {i} has {len(tokens)} tokens but {len(tags[i])} tags")
        out.append(Sentence([str(t) for t in tokens], None if tags is None else [str(t) for t in tags[i]]))
    return out


def known_sentences(
    sentences: Sequence[Sentence], known: Collection[str], where: str, warn: bool = True
) -> list[Sentence]:
    """The sentences whose tags the model knows. A sentence with a tag never seen in training is left out,
    with a warning naming the tags (as a classifier leaves out rows with unseen labels); none left is an error."""
    unseen = sorted({t for s in sentences for t in s.tags or [] if t not in known})
    if not unseen:
        return list(sentences)
    kept = [s for s in sentences if all(t in known for t in s.tags or [])]
    names = ", ".join(map(repr, unseen[:5]))
    if not kept:
        raise BertLSTMError(f"{where}: every sentence has tags never seen in training ({names})")
    if warn:
        message = f"{where}: {len(sentences) - len(kept)} sentence(s) have tags never seen in training ({names})"
        warnings.warn(message + "; they are left out of evaluation", BertLSTMWarning, stacklevel=2)
    return kept


def read_run_data(data: TagData, model: TaggerConfig, training: TrainConfig) -> RunData:
    """A run's tagged files read, their tags checked against one scheme (dev and test must have sentences
    whose tags training has), before any model is built."""
    files = {name: getattr(data, name) for name in ("train", "dev", "test")}
    if not files["train"]:
        raise BertLSTMError("a training run needs `train` data")
    read = {name: read_tagged(path, data.tag_column) for name, path in files.items() if path}
    scheme = data.tag_scheme if data.tag_scheme != "auto" else detect_scheme(read["train"])
    known = {t for s in to_iob2(read["train"], scheme, files["train"]) for t in s.tags or []}
    for name in ("dev", "test"):
        if name in read:
            known_sentences(to_iob2(read[name], scheme, files[name]), known, files[name], warn=False)
    parts = {name: (sentences, None) for name, sentences in read.items()}
    return RunData(parts["train"], parts.get("dev"), parts.get("test"), {"tag_scheme": scheme})
