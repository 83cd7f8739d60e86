"""Words laid out in encoder windows, and the tagger's datasets.

Labels belong to words, the encoder reads word pieces. Each sentence becomes one or more *windows* of word
pieces (``[CLS] pieces [SEP]``) and, for each word, where its pieces sit in which window. A sentence longer
than the encoder's ``max_length`` gets overlapping windows, and each word is read from the window where it
has the most context on both sides, so every word is tagged and none is truncated. With document context, a
sentence's one window is filled up with the words around it in its document (the BERT paper's setting); only
the sentence's own words are tagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core.batching import windows_batch
from .data import Sentence


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
    """Turns words into pieces with the encoder's tokenizer (a ``tokenizers.Tokenizer``, not truncating), and
    sentences into :class:`Layout`."""

    tokenizer: Any
    max_length: int
    cls_id: int
    sep_id: int
    unk_id: int | None
    _memo: dict[str, list[int]] = field(default_factory=dict)

    def pieces(self, words: Sequence[str]) -> list[list[int]]:
        """Word-piece ids per word (never empty: an unknown word is the unknown token)."""
        new = [w for w in dict.fromkeys(words) if w not in self._memo]
        if new:
            encoded = self.tokenizer.encode_batch(new, add_special_tokens=False)
            unk = self.unk_id if self.unk_id is not None else 0
            self._memo.update({w: e.ids or [unk] for w, e in zip(new, encoded, strict=True)})
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
        return [self.cls_id, *(i for word in pieces[first:last] for i in word), self.sep_id]

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
class TagDataset:
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

    def __len__(self) -> int:
        return len(self.layouts)

    def __getitem__(self, i: int) -> tuple[tuple[list[Any], Layout], list[int] | None]:
        layout = self.layouts[i]
        windows = layout.windows if self.store is None else [self.store[j] for j in self.window_ids[i]]
        return (windows, layout), (self.tags[i] if self.tags is not None else None)

    def collate(self, items: list[tuple[tuple[list[Any], Layout], Any]]) -> dict[str, np.ndarray]:
        """Windows (Nw, T) of ids and mask, or of features (Nw, T, D) and their lengths; per word (B, W) its
        window row and piece span; each sentence's word count (B,); and the tags (B, W), -100 past the end."""
        windows = [w for (ws, _), _ in items for w in ws]
        batch = windows_batch(windows, self.pad_id, cached=self.store is not None)
        layouts = [layout for (_, layout), _ in items]
        words = max(len(layout.word_start) for layout in layouts)
        maps = np.zeros((3, len(items), words), dtype=np.int64)  # window, first piece, past-last piece
        counts = np.zeros(len(items), dtype=np.int64)
        first_window = 0
        for row, ((ws, layout), _) in enumerate(items):
            n = len(layout.word_start)
            maps[0, row, :n] = np.asarray(layout.word_window) + first_window
            maps[1, row, :n], maps[2, row, :n] = layout.word_start, layout.word_end
            counts[row] = n
            first_window += len(ws)
        batch.update(word_window=maps[0], word_start=maps[1], word_end=maps[2], word_counts=counts)
        if items[0][1] is not None:
            labels = np.full((len(items), words), -100, dtype=np.int64)  # (B, W): -100 where no word is
            for row, (_, tags) in enumerate(items):
                labels[row, : len(tags)] = tags
            batch["labels"] = labels
        return batch
