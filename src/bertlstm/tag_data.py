"""Data for token tagging: CoNLL and JSON Lines files, tag schemes, and words laid out in encoder windows.

Labels belong to words, the encoder reads word pieces. Each sentence becomes one or more *windows* of word
pieces (``[CLS] pieces [SEP]``) and, for each word, where its pieces sit in which window. A sentence longer
than the encoder's ``max_length`` gets overlapping windows, and each word is read from the window where it
has the most context on both sides, so every word is tagged and none is truncated. With document context, a
sentence's one window is filled up with the words around it in its document (the BERT paper's setting); only
the sentence's own words are tagged.

Tags are read in IOB1, IOB2 or BIOES (detected, or given) and held as IOB2, the scheme the model learns and
predicts in; spans are the same in every scheme.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import pad_batch
from .errors import BertLSTMError

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


# --- words into encoder windows ----------------------------------------------------------------------------
@dataclass
class Layout:
    """Where one sentence's words are read: its windows (word-piece ids, special tokens included), and per
    word the window and the positions of its first and past-last piece there."""

    windows: list[list[int]]
    word_window: list[int]
    word_start: list[int]
    word_end: list[int]

    @property
    def cost(self) -> int:
        return sum(len(w) for w in self.windows)


@dataclass
class WordPieces:
    """Turns words into pieces with the encoder's tokenizer, and sentences into :class:`Layout`."""

    tokenizer: Any
    max_length: int
    _memo: dict[str, list[int]] = field(default_factory=dict)

    def pieces(self, words: Sequence[str]) -> list[list[int]]:
        """Word-piece ids per word (never empty: an unknown word is the unknown token)."""
        new = [w for w in dict.fromkeys(words) if w not in self._memo]
        if new:
            encoded = self.tokenizer(new, add_special_tokens=False)["input_ids"]
            unk = self.tokenizer.unk_token_id if self.tokenizer.unk_token_id is not None else 0
            self._memo.update({w: ids or [unk] for w, ids in zip(new, encoded, strict=True)})
        budget = self.max_length - 2
        return [self._memo[w][:budget] for w in words]  # a word longer than a window keeps its first pieces

    def layouts(self, sentences: Sequence[Sentence], context: str = "sentence") -> list[Layout]:
        pieces = self.pieces([w for s in sentences for w in s.tokens])
        per_sentence, at = [], 0
        for s in sentences:
            per_sentence.append(pieces[at : at + len(s.tokens)])
            at += len(s.tokens)
        if context == "document":
            return [self._in_document(sentences, per_sentence, i) for i in range(len(sentences))]
        return [self._alone(p) for p in per_sentence]

    def _window(self, pieces: Sequence[list[int]], first: int, last: int) -> list[int]:
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        return [cls, *(i for word in pieces[first:last] for i in word), sep]

    def _alone(self, pieces: list[list[int]]) -> Layout:
        """Overlapping windows of whole words (half a window apart) when the sentence is too long for one."""
        budget, n = self.max_length - 2, len(pieces)
        counts = [len(p) for p in pieces]
        bounds: list[tuple[int, int]] = []
        start = 0
        while True:
            end, used = start, 0
            while end < n and used + counts[end] <= budget:
                used += counts[end]
                end += 1
            bounds.append((start, end))
            if end >= n:
                break
            back, nxt = 0, end  # the next window starts about half a window before this one ends
            while nxt - 1 > start and back + counts[nxt - 1] <= budget // 2:
                nxt -= 1
                back += counts[nxt]
            start = nxt
        layout = Layout([self._window(pieces, a, b) for a, b in bounds], [0] * n, [0] * n, [0] * n)
        best = [-1] * n
        for w, (a, b) in enumerate(bounds):
            position, total = 1, sum(counts[a:b])  # after [CLS]
            for i in range(a, b):
                margin = min(position - 1, 1 + total - position - counts[i])  # pieces of context, fewer side
                if margin > best[i]:
                    best[i] = margin
                    layout.word_window[i], layout.word_start[i] = w, position
                    layout.word_end[i] = position + counts[i]
                position += counts[i]
        return layout

    def _in_document(self, sentences: Sequence[Sentence], pieces: list[list[list[int]]], i: int) -> Layout:
        """Sentence ``i`` in one window with as many neighbouring words of its document as fit."""
        own = pieces[i]
        budget = self.max_length - 2
        if sum(len(p) for p in own) > budget:
            return self._alone(own)
        left = self._neighbours(sentences, pieces, i, -1)
        right = self._neighbours(sentences, pieces, i, 1)
        used, before, after = sum(len(p) for p in own), 0, 0
        grew = True
        while grew:  # add a word on each side in turn while one fits
            grew = False
            if before < len(left) and used + len(left[before]) <= budget:
                used += len(left[before])
                before, grew = before + 1, True
            if after < len(right) and used + len(right[after]) <= budget:
                used += len(right[after])
                after, grew = after + 1, True
        words = [*reversed(left[:before]), *own, *right[:after]]
        window = self._window(words, 0, len(words))
        position = 1 + sum(len(p) for p in left[:before])
        starts, ends = [], []
        for p in own:
            starts.append(position)
            position += len(p)
            ends.append(position)
        return Layout([window], [0] * len(own), starts, ends)

    def _neighbours(
        self, sentences: Sequence[Sentence], pieces: list[list[list[int]]], i: int, step: int
    ) -> list[list[int]]:
        """The words (as pieces) of sentence ``i``'s document before it (``step`` -1, nearest first) or after it
        (``step`` 1): as many as could fill a window, and none of another document."""
        words: list[list[int]] = []
        j, used = i + step, 0
        while 0 <= j < len(sentences) and sentences[j].document == sentences[i].document and used < self.max_length:
            sentence = pieces[j] if step > 0 else pieces[j][::-1]
            words += sentence
            used += sum(len(p) for p in sentence)
            j += step
        return words


# --- datasets ------------------------------------------------------------------------------------------------
class TagDataset(torch.utils.data.Dataset):
    """Sentences as windows of word-piece ids, or of cached encoder features (``store``: one entry row block
    per window, in the order of ``window_ids``), with their tag ids; :meth:`collate` builds a batch."""

    def __init__(
        self, layouts: list[Layout], tags: list[list[int]] | None, pad_id: int, store: Any | None = None
    ) -> None:
        self.layouts, self.tags, self.pad_id, self.store = layouts, tags, pad_id, store
        firsts = np.cumsum([0] + [len(layout.windows) for layout in layouts])
        self.window_ids = [list(range(firsts[i], firsts[i + 1])) for i in range(len(layouts))]
        self.lengths = [layout.cost for layout in layouts]  # what a sentence costs the encoder

    @property
    def windows(self) -> list[list[int]]:
        """Every window of every sentence, in order: what the feature cache encodes."""
        return [w for layout in self.layouts for w in layout.windows]

    def with_store(self, store: Any) -> TagDataset:
        return TagDataset(self.layouts, self.tags, self.pad_id, store)

    def __len__(self) -> int:
        return len(self.layouts)

    def __getitem__(self, i: int) -> tuple[tuple[list[Any], Layout], list[int] | None]:
        layout = self.layouts[i]
        windows = layout.windows if self.store is None else [self.store[j] for j in self.window_ids[i]]
        return (windows, layout), (self.tags[i] if self.tags is not None else None)

    def collate(self, items: list[tuple[tuple[list[Any], Layout], Any]]) -> dict[str, Tensor]:
        windows = [w for (ws, _), _ in items for w in ws]
        if self.store is None:
            input_ids, attention_mask = pad_batch(windows, self.pad_id)  # (Nw, T)
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        else:
            longest = max(len(w) for w in windows)
            features = np.zeros((len(windows), longest, windows[0].shape[1]), dtype=windows[0].dtype)  # (Nw, T, D)
            for row, w in enumerate(windows):
                features[row, : len(w)] = w
            batch = {"features": torch.from_numpy(features).float()}
            batch["lengths"] = torch.tensor([len(w) for w in windows], dtype=torch.long)
        words = max(len(layout.word_start) for (_, layout), _ in items)
        maps = torch.zeros(3, len(items), words, dtype=torch.long)  # window, first piece, past-last piece
        counts = torch.zeros(len(items), dtype=torch.long)
        first_window = 0
        for row, ((ws, layout), _) in enumerate(items):
            n = len(layout.word_start)
            maps[0, row, :n] = torch.tensor(layout.word_window) + first_window
            maps[1, row, :n] = torch.tensor(layout.word_start)
            maps[2, row, :n] = torch.tensor(layout.word_end)
            counts[row] = n
            first_window += len(ws)
        batch.update(word_window=maps[0], word_start=maps[1], word_end=maps[2], word_counts=counts)
        if items[0][1] is not None:
            labels = torch.full((len(items), words), -100, dtype=torch.long)  # (B, W): -100 where no word is
            for row, (_, tags) in enumerate(items):
                labels[row, : len(tags)] = torch.tensor(tags)
            batch["labels"] = labels
        return batch
