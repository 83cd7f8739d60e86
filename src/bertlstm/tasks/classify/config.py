"""The classifier's settings: its model (the shared encoder settings and multi-label) and its data files."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.config import DataConfig, EncoderSettings, TrainConfig
from ...core.errors import BertLSTMError
from ...core.settings import setting


@dataclass(frozen=True)
class ModelConfig(EncoderSettings):
    """Everything needed to rebuild a BERT→LSTM classifier (besides its labels)."""

    multi_label: bool = setting(False, "several labels per text: sigmoid outputs, binary cross-entropy")

    def check_training(self, training: TrainConfig) -> None:
        if training.metric == "micro_f1" and not self.multi_label:
            raise BertLSTMError("`metric` micro_f1 is for multi-label tasks; use accuracy or macro_f1", "metric")


@dataclass(frozen=True)
class ClassifyData(DataConfig):
    """Tables of labelled texts, and how to read them."""

    train: str | None = setting(None, "training data (.csv, .tsv, .jsonl, .parquet; .gz allowed)", metavar="FILE")
    text_column: str | None = setting(None, "column holding the text; none: text, sentence, review, ... (found)")
    label_column: str | None = setting(None, "column holding the label; none: label, labels, category, ... (found)")
    label_separator: str = setting(",", "separates the labels of one text when multi-label")
