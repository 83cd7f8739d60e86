"""The classifier's settings: its model (the shared encoder settings and multi-label) and its data files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ...core.config import DataConfig, EncoderSettings, TrainConfig
from ...core.errors import BertLSTMError
from ...core.settings import setting

LongText = Literal["truncate", "head-tail", "chunks"]


@dataclass(frozen=True)
class ModelConfig(EncoderSettings):
    """Everything needed to rebuild a BERT→LSTM classifier (besides its labels)."""

    multi_label: bool = setting(False, "several labels per text: sigmoid outputs, binary cross-entropy")
    long_text: LongText = setting(
        "truncate",
        "a text longer than max_length: cut at its end (truncate), keep its first quarter and last three quarters "
        "(head-tail), or read it whole in windows (chunks: the documents task)",
    )

    long_texts: ClassVar[tuple[str, ...]] = ("truncate", "head-tail")  # what this model reads; chunks: documents

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.long_text not in self.long_texts:
            raise BertLSTMError(
                f"`long_text` {self.long_text} is not for this model: chunks reads a document whole, in windows, "
                "as the documents task (`task` documents, or BertLSTMDocumentClassifier)",
                "long_text",
            )

    def check_training(self, training: TrainConfig) -> None:
        if training.metric == "micro_f1" and not self.multi_label:
            raise BertLSTMError("`metric` micro_f1 is for multi-label tasks; use accuracy or macro_f1", "metric")


@dataclass(frozen=True)
class ClassifyData(DataConfig):
    """Tables of labelled texts, and how to read them."""

    train: str | None = setting(None, "training data (.csv, .tsv, .jsonl, .parquet; .gz allowed)", metavar="FILE")
    text_column: str | None = setting(
        None, "column holding the text (default: the first of text, sentence, review, content, document)"
    )
    label_column: str | None = setting(
        None, "column holding the label (default: the first of label, labels, category, class, target)"
    )
    label_separator: str = setting(",", "separates the labels of one text when multi-label")
