"""The tagger behind an engine (PyTorch or onnxruntime): sentences in, a tag per word out; raw texts in,
entities with character offsets out.

The engine gives emission scores per word; decoding is :func:`viterbi` over the CRF's scores (the moves the
tag scheme forbids already at -10000), or each word's best tag without a CRF: the same NumPy code for a model
in memory and for its export. What ``bertlstm predict``, ``evaluate`` and ``serve`` run, and what
:class:`~.estimator.BertLSTMTagger` predicts through; it imports no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...core.backends import Predictor
from ...core.data import TEXT_COLUMNS, column_texts, find_column, iter_tables
from ...core.distributed import ALONE, Shard, current_shard, sharded_rows
from ...core.errors import BertLSTMError
from .checks import has_tokens
from .config import TagData
from .data import Sentence, detect_scheme, known_sentences, read_tagged, spans, split_words, to_iob2
from .metrics import format_report, tag_report
from .windows import TagDataset, WordPieces


def viterbi(emissions: np.ndarray, counts: np.ndarray, start: np.ndarray, transitions: np.ndarray, end: np.ndarray):
    """The best tag path per sentence, all sentences at once (what the CRF's :meth:`~bertlstm.tasks.tag.crf.
    CRF.decode` does, in NumPy): (B, W, C), (B,) -> (B, W) tag ids, 0 past the end."""
    batch, words, tags = emissions.shape
    score = start + emissions[:, 0]  # (B, C)
    pointers = np.zeros((batch, words, tags), dtype=np.int64)
    pointers[:, 0] = np.arange(tags)
    for t in range(1, words):
        candidates = score[:, :, None] + transitions  # (B, C_from, C_to)
        best = candidates.argmax(1)  # (B, C_to)
        real = (t < counts)[:, None]  # (B, 1)
        score = np.where(real, np.take_along_axis(candidates, best[:, None], 1)[:, 0] + emissions[:, t], score)
        pointers[:, t] = np.where(real, best, np.arange(tags))  # padding points every tag to itself
    path = np.zeros((batch, words), dtype=np.int64)
    path[:, -1] = (score + end).argmax(1)
    for t in range(words - 1, 0, -1):
        path[:, t - 1] = np.take_along_axis(pointers[:, t], path[:, t : t + 1], 1)[:, 0]
    return np.where(np.arange(words) < counts[:, None], path, 0)


def spans_of(texts: Sequence[str], predict: Callable[[list[Sentence]], list[list[str]]]) -> list[list[dict]]:
    """Entities in raw texts: each text cut into words, ``predict(sentences)`` tags them, and every entity
    becomes ``{"text", "type", "start", "end"}`` with character offsets into its text."""
    # Each text is its own document: with document context, no text reads another's words.
    sentences = [dataclasses.replace(split_words(text), document=i) for i, text in enumerate(texts)]
    found: list[list[dict[str, Any]]] = [[] for _ in texts]
    keep = [i for i, s in enumerate(sentences) if s.tokens]  # a text with no words has no entities
    for i, tags in zip(keep, predict([sentences[i] for i in keep]), strict=True):
        offsets = sentences[i].offsets or []
        for first, last, kind in spans(tags):
            start, end = offsets[first][0], offsets[last - 1][1]
            found[i].append({"text": texts[i][start:end], "type": kind, "start": start, "end": end})
    return found


def _entity_score(probs: np.ndarray, tags: np.ndarray, first: int, last: int, shift: int) -> float:
    """The mean probability of the tags of words ``first`` to ``last`` - 1, read ``shift`` words over in
    ``probs`` (words, tags): a word before them was left out."""
    return float(np.mean([probs[i + shift, tags[i]] for i in range(first, last)]))


class TaggerPredictor(Predictor):
    """Tags for sentences and entities for texts, from a tagger's emission scores."""

    task = "tagging"
    output = "emissions"
    explains = True  # by occlusion

    def __init__(self, engine: Any, meta: dict[str, Any], tokenizer: Any, batch_size: int | None = None) -> None:
        super().__init__(engine, meta, tokenizer, batch_size)
        self.tags = list(meta["labels"]["names"])
        ids = meta["special_token_ids"]
        self.pieces = WordPieces(tokenizer, int(self.model["max_length"]), ids["cls"], ids["sep"], ids["unk"])
        crf = meta.get("crf")
        scores = (
            None if crf is None else [np.asarray(crf[k], dtype=np.float32) for k in ("start", "transitions", "end")]
        )
        self.crf = scores

    @classmethod
    def truncation(cls, meta: dict[str, Any]) -> int | None:
        return None  # words are cut into pieces and laid out in windows: nothing is ever truncated

    def tag_ids(self, sentences: Sequence[Sentence], shard: Shard = ALONE) -> np.ndarray:
        """The decoded tag ids of every sentence (an object array of (words,) arrays), in order; with several
        processes (``shard``), each computes a share."""
        dataset = TagDataset(self.pieces.layouts(sentences, self.model.get("context", "sentence")), None, self.pad_id)

        def compute(rows: list[int]) -> np.ndarray:
            out = np.empty(len(rows), dtype=object)
            for batch, emissions in self.batches(dataset, rows):  # (B, W, C)
                counts = np.asarray([len(dataset.layouts[rows[j]].word_start) for j in batch])
                best = emissions.argmax(-1) if self.crf is None else viterbi(emissions, counts, *self.crf)
                for k, j in enumerate(batch):
                    out[j] = best[k, : counts[k]]
            return out

        return sharded_rows(dataset.lengths, shard, compute)

    def predict_tags(self, sentences: Sequence[Sentence], shard: Shard = ALONE) -> list[list[str]]:
        """IOB2 tags for each sentence."""
        if not sentences:
            return []
        return [[self.tags[int(i)] for i in row] for row in self.tag_ids(sentences, shard)]

    def predict_spans(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Entities in raw texts: ``{"text", "type", "start", "end"}`` with character offsets."""
        return spans_of(texts, self.predict_tags)

    def answer(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        if self.explaining is not None:
            return self.explain(texts, **self.explaining)
        return [{"entities": entities} for entities in self.predict_spans(texts)]

    # --- explanations ----------------------------------------------------------------------------
    def explain(
        self, texts: Sequence[str], method: str | None = None, steps: int = 32, label: str | None = None
    ) -> list[dict[str, Any]]:
        """Per text, its ``entities``, each with the words that drove it as ``explanation``: every word
        outside the entity, in text order, scored by how much the entity's score (the mean probability of its
        words' tags, from the emissions) drops when the word is left out (occlusion)."""
        self.explain_method(method)  # occlusion: the one method a tagger has
        if label is not None:
            raise BertLSTMError("`explain_label` is for classifiers: a tagger explains each entity", "explain_label")
        return [{"entities": self._explained_entities(text)} for text in texts]

    def _explained_entities(self, text: str) -> list[dict[str, Any]]:
        """The entities of one text, each with the other words' occlusion scores."""
        sentence = split_words(text)
        words, offsets = sentence.tokens, sentence.offsets or []
        if not words:
            return []
        tags = self.tag_ids([sentence])[0]  # (words,) decoded as predict_spans decodes them
        found = spans([self.tags[int(t)] for t in tags])
        if not found:
            return []
        needed = sorted({w for first, last, _ in found for w in range(len(words)) if not first <= w < last})
        variants = [words] + [words[:w] + words[w + 1 :] for w in needed]  # never empty: an entity stays
        probs = self._tag_probabilities([Sentence(tokens, None, k) for k, tokens in enumerate(variants)])
        without = dict(zip(needed, probs[1:], strict=True))
        entities = []
        for first, last, kind in found:
            whole = _entity_score(probs[0], tags, first, last, 0)
            scores = [
                {
                    "word": words[w],
                    "score": round(whole - _entity_score(without[w], tags, first, last, -1 if w < first else 0), 6),
                }
                for w in range(len(words))
                if not first <= w < last
            ]
            start, end = offsets[first][0], offsets[last - 1][1]
            entities.append({"text": text[start:end], "type": kind, "start": start, "end": end, "explanation": scores})
        return entities

    def _tag_probabilities(self, sentences: list[Sentence]) -> list[np.ndarray]:
        """Per sentence, each word's tag probabilities from the emissions (softmax): (words, tags) arrays."""
        dataset = TagDataset(self.pieces.layouts(sentences, self.model.get("context", "sentence")), None, self.pad_id)
        out: list[np.ndarray] = [np.empty(0)] * len(sentences)
        for batch, emissions in self.batches(dataset, list(range(len(sentences)))):  # (B, W, C)
            for k, j in enumerate(batch):
                scores = emissions[k, : len(dataset.layouts[j].word_start)]  # (words, C)
                exp = np.exp(scores - scores.max(-1, keepdims=True))
                out[j] = exp / exp.sum(-1, keepdims=True)
        return out

    def batch_of(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        layouts = self.pieces.layouts([split_words(text) for text in texts], self.model.get("context", "sentence"))
        dataset = TagDataset(layouts, None, self.pad_id)
        return dataset.collate([dataset[i] for i in range(len(dataset))])

    # --- evaluation ------------------------------------------------------------------------------
    def evaluate(self, sentences: Sequence[Sentence], scheme: str | None = None, shard: Shard = ALONE) -> dict:
        """Entity-level micro/macro and per-type P/R/F1, word accuracy and a confusion of entity types, on
        tagged sentences (tags in ``scheme``: detected when None). Sentences with tags never seen in training
        are left out, with a warning."""
        scheme = scheme or detect_scheme(sentences)
        gold = known_sentences(to_iob2(sentences, scheme, "evaluation data"), set(self.tags), "evaluation data")
        predicted = self.predict_tags([Sentence(s.tokens, None, s.document, s.line) for s in gold], shard)
        return tag_report([s.tags or [] for s in gold], predicted)

    def evaluate_file(self, path: str, data: TagData) -> dict[str, Any]:
        scheme = None if data.tag_scheme == "auto" else data.tag_scheme
        return self.evaluate(read_tagged(path, data.tag_column), scheme, current_shard())

    format_report = staticmethod(format_report)

    # --- files -----------------------------------------------------------------------------------
    def read_file(self, path: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """A CoNLL or JSON Lines file of tokens as one table (``tokens``, ``document``: documents give the
        context, so the file is read whole), or a table of texts in chunks."""
        if has_tokens(Path(path)):
            sentences = read_tagged(path, labelled=False)
            frame = pd.DataFrame({"tokens": [s.tokens for s in sentences], "document": [s.document for s in sentences]})
            frame.attrs.update(kind="tokens", start=0)
            return iter([frame])
        return iter_tables(path, chunk_rows)

    def predict_frame(self, frame: pd.DataFrame, data: TagData, where: str) -> pd.DataFrame:
        """Tokens get a ``tags`` column (a tag per token); texts an ``entities`` column."""
        frame = frame.reset_index(drop=True)
        if frame.attrs.get("kind") == "tokens":
            sentences = [
                Sentence(list(t), None, int(d)) for t, d in zip(frame["tokens"], frame["document"], strict=True)
            ]
            if self.explaining is not None:
                raise BertLSTMError(f"{where}: a tagger explains the entities of texts, not the tags of tokens")
            return frame.assign(tags=self.predict_tags(sentences))
        texts = column_texts(frame, find_column(frame, data.text_column, TEXT_COLUMNS, "text", where), where)
        return frame.assign(entities=[answer["entities"] for answer in self.answer(texts)])
