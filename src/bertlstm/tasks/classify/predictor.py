"""The classifier behind an engine (PyTorch or onnxruntime): texts in, labels and probabilities out.

What ``bertlstm predict``, ``evaluate`` and ``serve`` run, and what :class:`~.estimator.BertLSTMClassifier`
predicts through. It imports no torch: an exported graph runs with onnxruntime and ``tokenizers`` alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...core.backends import Predictor
from ...core.data import TEXT_COLUMNS, column_texts, find_column, iter_tables
from ...core.distributed import ALONE, Shard, current_shard, sharded_rows
from ...core.errors import BertLSTMError
from .config import ClassifyData
from .data import TextCut, TokenDataset, load_labelled
from .labels import Labels


def activate(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Probabilities from logits (N, C): independent sigmoids when multi-label, else a softmax (in float64, as
    SciPy's, which prediction does not import)."""
    logits = logits.astype(np.float64)
    if multi_label:
        return np.exp(-np.logaddexp(0.0, -logits)).astype(np.float32)  # 1 / (1 + e^-x), without overflow
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def prediction_columns(proba: np.ndarray, labels: Labels, separator: str = ",") -> pd.DataFrame:
    """The label of each row (multi-label: the names above threshold, joined by ``separator``) and one
    probability column per class."""
    decided = [separator.join(label) if isinstance(label, list) else label for label in labels.decode(proba)]
    rounded = proba.astype(np.float64).round(6)  # float64: the same digits in every format, and after a JSON trip
    columns = {"label": decided, **{f"prob_{name}": rounded[:, i] for i, name in enumerate(labels.names)}}
    return pd.DataFrame(columns)


class ClassifierPredictor(Predictor):
    """Labels and probabilities for texts, from a classifier's logits."""

    task = "classification"
    output = "logits"
    explains = True
    follows_gradients = True

    def __init__(self, engine: Any, meta: dict[str, Any], tokenizer: Any, batch_size: int | None = None) -> None:
        super().__init__(engine, meta, tokenizer, batch_size)
        self.labels = Labels.from_dict(meta["labels"], "the model's labels")
        self.cut = self.text_cut(meta)

    @staticmethod
    def text_cut(meta: dict[str, Any]) -> TextCut:
        return TextCut(int(meta["model"]["max_length"]), meta["model"].get("long_text", "truncate"))

    @classmethod
    def truncation(cls, meta: dict[str, Any]) -> int | None:
        return cls.text_cut(meta).truncation

    def logits(self, texts: Sequence[str], shard: Shard = ALONE) -> np.ndarray:
        """Logits (N, C) in text order; with several processes (``shard``), each computes a share."""
        dataset = TokenDataset(self.cut(self.tokenizer, texts), None, self.pad_id)

        def compute(rows: list[int]) -> np.ndarray:
            out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
            for batch, logits in self.batches(dataset, rows):
                out[batch] = logits
            return out

        return sharded_rows(dataset.lengths, shard, compute)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (N, C), columns in ``labels.names`` order."""
        if not len(texts):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return activate(self.logits(texts), self.labels.multi_label)

    def answer(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Per text its label (multi-label: the label set above threshold) and every class's probability."""
        proba = self.predict_proba(texts)
        key = "labels" if self.labels.multi_label else "label"
        answers = [
            {key: name, "probabilities": dict(zip(self.labels.names, map(float, p), strict=True))}
            for name, p in zip(self.labels.decode(proba), proba, strict=True)
        ]
        if self.explaining is not None:
            for answer, why in zip(answers, self.explain(texts, **self.explaining), strict=True):
                answer.update(why)
        return answers

    def batch_of(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        dataset = TokenDataset(self.cut(self.tokenizer, texts), None, self.pad_id)
        return dataset.collate([dataset[i] for i in range(len(dataset))])

    # --- explanations ----------------------------------------------------------------------------
    def explain(
        self, texts: Sequence[str], method: str | None = None, steps: int = 32, label: str | None = None
    ) -> list[dict[str, Any]]:
        """Per text, why: its words' scores for its predicted label (``label``: that one instead), as
        ``explanation`` (a list of ``{"word", "score"}`` in text order), the label as ``explained``, and for
        integrated gradients the completeness check as ``completeness``; multi-label, each of these per label
        of the predicted set. ``method``: integrated-gradients (the default where gradients can be followed),
        gradient-x-input or occlusion; see :mod:`bertlstm.core.attribution` for them and the word rule."""
        from ...core import attribution  # torch (and Captum): only when explaining

        method = self.explain_method(method)
        attribution.check_method(method, steps)
        if label is not None and label not in self.labels.names:
            known = ", ".join(self.labels.names)
            raise BertLSTMError(f"`explain_label` {label!r} is not a label of this model: {known}", "explain_label")
        chosen = [label] if label is not None else None
        out = []
        for text, decided in zip(texts, self.labels.decode(self.predict_proba(texts)), strict=True):
            pieces = self.pieces(attribution, text)
            names: list[str] = chosen or (decided if isinstance(decided, list) else [decided])
            why = {name: self._why(attribution, pieces, self.labels.names.index(name), method, steps) for name in names}
            if self.labels.multi_label:
                out.append({"explanation": {n: w[0] for n, w in why.items()}, "explained": names})
                if method == "integrated-gradients":
                    out[-1]["completeness"] = {n: w[1] for n, w in why.items()}
            else:
                words, check = why[names[0]]
                out.append({"explanation": words, "explained": names[0], **({"completeness": check} if check else {})})
        return out

    def pieces(self, attribution: Any, text: str) -> Any:
        """The text's word pieces as the model reads them (:class:`~bertlstm.core.attribution.Pieces`)."""
        encoding = self.tokenizer.encode(text)
        kept = self.cut.head_tail(list(range(len(encoding.ids)))) if self.cut.long_text == "head-tail" else None
        return attribution.Pieces.of(encoding, text, kept)

    def _why(self, attribution: Any, pieces: Any, index: int, method: str, steps: int) -> tuple[list, dict | None]:
        """One text's word scores for class ``index``, and the completeness check (integrated gradients)."""
        multi = self.labels.multi_label
        if method == "occlusion":

            def scores(rows: list[list[int]]) -> np.ndarray:
                out = []
                for start in range(0, len(rows), self.batch_size):
                    part = TokenDataset(rows[start : start + self.batch_size], None, self.pad_id)
                    out.append(activate(self.engine(part.collate([part[i] for i in range(len(part))])), multi))
                return np.concatenate(out)[:, index]

            return attribution.occlusion_scores(pieces, scores), None
        engine: Any = self.engine  # a TorchEngine (explain_method): its model in memory
        model = engine.model

        def score(ids: Any, mask: Any) -> Any:
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, C)
            return (logits.sigmoid() if multi else logits.softmax(-1))[:, index]  # (B,)

        per_piece, check = attribution.gradient_scores(model, score, pieces, self.pad_id, method, steps, engine.device)
        return pieces.word_scores(per_piece), check

    # --- evaluation ------------------------------------------------------------------------------
    def evaluate(self, texts: Sequence[str], labels: Sequence[Any], shard: Shard = ALONE) -> dict[str, Any]:
        """The full report on ``texts`` and their ``labels`` (as given: names, numbers or label lists); rows
        whose label the model never saw in training are left out, with a warning."""
        from .metrics import evaluation_report  # scikit-learn: only to evaluate

        clean = Labels.clean(labels, self.labels.multi_label, "evaluation labels")
        targets, keep = self.labels.encode(clean, "evaluation data")
        known = [texts[i] for i in keep]
        report = evaluation_report(self.labels, targets, self.logits(known, shard))
        return {**report, "n_unseen_label": len(clean) - len(known)}

    def evaluate_file(self, path: str, data: ClassifyData) -> dict[str, Any]:
        separator = data.label_separator if self.labels.multi_label else None
        texts, labels = load_labelled(path, data.text_column, data.label_column, separator)
        return self.evaluate(texts, labels, current_shard())  # under torchrun, every process scores a share

    @staticmethod
    def format_report(report: dict[str, Any]) -> str:
        from .metrics import format_report  # scikit-learn: only for a report

        return format_report(report)

    # --- files -----------------------------------------------------------------------------------
    def read_file(self, path: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """A table file in chunks, every column kept."""
        return iter_tables(path, chunk_rows)

    def predict_frame(self, frame: pd.DataFrame, data: ClassifyData, where: str) -> pd.DataFrame:
        """The table with a label and one probability per class added (named ``predicted_...`` when the table
        has such columns already, such as its own true labels); multi-label sets joined by ``label_separator``."""
        texts = column_texts(frame, find_column(frame, data.text_column, TEXT_COLUMNS, "text", where), where)
        predicted = prediction_columns(self.predict_proba(texts), self.labels, data.label_separator)
        if set(predicted.columns) & set(frame.columns):
            predicted = predicted.add_prefix("predicted_")
        if self.explaining is not None:
            why = pd.DataFrame(self.explain(texts, **self.explaining))
            why = why.add_prefix("predicted_") if set(why.columns) & set(frame.columns) else why
            predicted = pd.concat([predicted, why], axis=1)
        return pd.concat([frame.reset_index(drop=True), predicted], axis=1)
