"""The document classifier behind two engines: long texts in, labels and probabilities out.

A prediction runs in two halves, each on its own engine (PyTorch, or an export's two ONNX graphs): every
window of the documents is encoded to a vector, in batches of a fixed number of windows whatever the
documents' lengths (so memory is bounded by a batch, not by the longest document); then each document's
vectors go through the LSTM and the head. Everything else — labels, probabilities, files, evaluation — is the
classifier's (:class:`~bertlstm.tasks.classify.predictor.ClassifierPredictor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.backends import Engine, OnnxEngine, Predictor, plain_tokenizer
from ...core.batching import pad_batch, sorted_batches
from ...core.distributed import ALONE, Shard, sharded_rows
from ...core.progress import Progress
from ..classify.predictor import ClassifierPredictor, activate
from .windows import Windows, document_pieces

WINDOWS_GRAPH = ".windows"  # the window encoder's export: NAME.windows.onnx beside NAME.onnx


class DocumentPredictor(ClassifierPredictor):
    """Labels and probabilities for whole documents (see the module)."""

    task = "documents"
    output = "logits"
    max_chars = 10_000_000  # what the server accepts by default: documents are long
    max_body_bytes = 64 * 2**20

    def __init__(
        self, engine: Engine, meta: dict[str, Any], tokenizer: Any, batch_size: int | None = None, **engines: Engine
    ) -> None:
        """``engine`` reads documents' window vectors; ``engines["windows"]`` encodes windows into them."""
        super().__init__(engine, meta, tokenizer, batch_size)
        self.window_engine = engines["windows"]
        model, ids = meta["model"], meta["special_token_ids"]
        self.cutter = Windows(
            int(model["chunk_length"] or model["max_length"]), int(model["chunk_stride"]), ids["cls"], ids["sep"]
        )

    @classmethod
    def truncation(cls, meta: dict[str, Any]) -> int | None:
        return None  # a document is read whole

    @classmethod
    def from_export(
        cls,
        path: str | Path,
        meta: dict[str, Any],
        batch_size: int | None = None,
        stamped: dict[str, Any] | None = None,
    ) -> Predictor:
        """The export's two graphs: the window encoder (``NAME.windows.onnx``) and the document reader, each
        checked against the metadata it was exported with (``stamped``, default ``meta``)."""
        path, stamped = Path(path), meta if stamped is None else stamped
        tokenizer = plain_tokenizer(path.parent / meta["tokenizer"], None)
        quantized = meta.get("quantized")
        windows = OnnxEngine(path.with_name(meta["graphs"]["windows"]["file"]), "vectors", quantized, meta=stamped)
        reader = OnnxEngine(path, cls.output, quantized, meta=stamped)
        return cls(reader, meta, tokenizer, batch_size, windows=windows)

    def documents(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Each text's windows of word-piece ids."""
        return [self.cutter(pieces) for pieces in document_pieces(self.tokenizer, texts)]

    def logits(self, texts: Sequence[str], shard: Shard = ALONE) -> np.ndarray:
        """Logits (N, C) in text order; with several processes (``shard``), each computes a share."""
        documents = self.documents(texts)

        def compute(rows: list[int]) -> np.ndarray:
            mine = [documents[i] for i in rows]
            vectors = self.window_vectors([w for windows in mine for w in windows])
            return self.read(mine, vectors)

        return sharded_rows([sum(len(w) for w in windows) for windows in documents], shard, compute)

    def window_vectors(self, windows: list[list[int]]) -> np.ndarray:
        """Every window's vector (Nw, D), encoded in length-sorted batches of ``batch_size`` windows."""
        out: np.ndarray | None = None
        with Progress(self.progress, total=len(windows), unit="window") as step:
            for rows in sorted_batches([len(w) for w in windows], self.batch_size):
                input_ids, attention_mask = pad_batch([windows[i] for i in rows], self.pad_id)
                vectors = self.window_engine({"input_ids": input_ids, "attention_mask": attention_mask})
                out = np.zeros((len(windows), vectors.shape[1]), dtype=np.float32) if out is None else out
                out[rows] = vectors
                step.update(len(rows))
        assert out is not None
        return out

    def read(self, documents: list[list[list[int]]], vectors: np.ndarray) -> np.ndarray:
        """Logits (N, C): the documents' window vectors (rows of ``vectors``, in order) read by the LSTM and
        the head, in batches of documents with similar window counts."""
        counts = np.asarray([len(windows) for windows in documents])
        firsts = np.cumsum(counts) - counts
        out = np.zeros((len(documents), len(self.labels)), dtype=np.float32)
        for rows in sorted_batches(counts.tolist(), self.batch_size):
            batch = self.head_batch(vectors, firsts[rows], counts[rows])
            out[rows] = self.engine(batch)
        return out

    @staticmethod
    def head_batch(vectors: np.ndarray, firsts: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Documents' window vectors padded to the longest: (B, W, D) with their counts (B,)."""
        padded = np.zeros((len(counts), int(counts.max()), vectors.shape[1]), dtype=np.float32)
        for row, (first, count) in enumerate(zip(firsts, counts, strict=True)):
            padded[row, :count] = vectors[first : first + count]
        return {"vectors": padded, "doc_counts": counts.astype(np.int64)}

    # --- explanations (the classifier's explain, with a document's pieces and windows) ----------------------
    def pieces(self, attribution: Any, text: str) -> Any:
        """The whole text's word pieces, no special tokens: what its windows are cut from."""
        return attribution.Pieces.of(self.tokenizer.encode(text, add_special_tokens=False), text)

    def _why(self, attribution: Any, pieces: Any, index: int, method: str, steps: int) -> tuple[list, dict | None]:
        """One document's word scores for class ``index``: by occlusion, every variant cut into windows again
        and read by the engines, some variants at a time; by gradients, window by window (see
        :func:`~bertlstm.core.attribution.window_gradient_scores`)."""
        multi = self.labels.multi_label
        if method == "occlusion":

            def scores(variants: list[list[int]]) -> np.ndarray:
                out = []
                for start in range(0, len(variants), self.batch_size):
                    documents = [self.cutter(ids) for ids in variants[start : start + self.batch_size]]
                    vectors = self.window_vectors([w for windows in documents for w in windows])
                    out.append(activate(self.read(documents, vectors), multi)[:, index])
                return np.concatenate(out)

            return attribution.occlusion_scores(pieces, scores), None
        import torch  # the gradient methods run on the model in memory: torch is there

        engine: Any = self.engine  # a TorchEngine over a DocumentHead
        model = engine.model.model

        def score(vectors: Any) -> Any:  # (S, Nw, D) -> (S,)
            counts = torch.full((vectors.size(0),), vectors.size(1), dtype=torch.long)
            logits = model.read_documents(vectors, counts)  # (S, C)
            return (logits.sigmoid() if multi else logits.softmax(-1))[:, index]

        starts = self.cutter.starts(len(pieces.ids))
        windows = self.cutter(pieces.ids)
        per_window, check = attribution.window_gradient_scores(
            model, score, windows, self.pad_id, method, steps, self.batch_size, engine.device
        )
        per_piece = np.zeros(len(pieces.ids))  # a piece two windows share: the sum of both
        for start, window in zip(starts, per_window, strict=True):
            inside = window[1:-1]  # without [CLS] and [SEP]
            per_piece[start : start + len(inside)] += inside
        return pieces.word_scores(per_piece), check

    def batch_of(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The texts' windows as one batch for the window encoder (what its export is checked on)."""
        windows = [w for document in self.documents(texts) for w in document]
        input_ids, attention_mask = pad_batch(windows, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def head_batch_of(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The texts as one batch for the document reader: their window vectors (what its export is checked on)."""
        documents = self.documents(texts)
        counts = np.asarray([len(windows) for windows in documents])
        vectors = self.window_vectors([w for windows in documents for w in windows])
        return self.head_batch(vectors, np.cumsum(counts) - counts, counts)
