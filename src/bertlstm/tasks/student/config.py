"""The student's settings: the teacher it learns from, its own small model (the teacher's word-piece embeddings,
an LSTM, a linear head), how its transfer set is made and what it is trained to match; and its data files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ...core.config import TaskSettings, TrainConfig
from ...core.errors import BertLSTMError
from ...core.settings import check_int, check_number, setting
from ..classify.config import ClassifyData
from .teacher import find_teacher

Loss = Literal["mse", "kl"]


@dataclass(frozen=True)
class StudentConfig(TaskSettings):
    """Everything needed to rebuild a student (besides its labels, which are its teacher's), and how it was made."""

    teacher: str | None = setting(
        None, "the classifier to distil: a model folder, a Hub id (user/name) or an export (.onnx)", metavar="MODEL"
    )
    lstm_units: int = setting(150, "hidden units of each LSTM direction")
    lstm_layers: int = setting(1, "stacked LSTM layers")
    bidirectional: bool = setting(True, "read each text in both directions")
    dropout: float = setting(0.2, "dropout on the word embeddings, between LSTM layers and before the head")
    train_embeddings: bool = setting(False, "train the word-piece embeddings too (they are the teacher's)")
    max_length: int = setting(128, "word pieces per text, special tokens included; longer texts are truncated")
    augment: int = setting(
        10, "augmented copies of each training text in the transfer set (words masked or replaced, n-grams)"
    )
    mask_prob: float = setting(0.1, "augmenting: the chance that a word becomes the mask token")
    replace_prob: float = setting(0.1, "augmenting: the chance that a word becomes another word of the training texts")
    ngram_prob: float = setting(0.25, "augmenting: the chance that a copy is cut down to one of its n-grams (n 1-5)")
    loss: Loss = setting(
        "mse", "what the student matches: the teacher's logits (mse), or its probabilities at a temperature (kl)"
    )
    temperature: float = setting(2.0, "kl: the temperature of both sides' probabilities")
    gold_weight: float = setting(
        0.0, "share of the loss from cross-entropy on the gold labels, where the transfer set has them (0 to 1)"
    )

    multi_label: ClassVar[bool] = False  # the classifier's predictor reads it from the labels section

    def __post_init__(self) -> None:
        self.check_choices()
        check_int(self.lstm_units, "lstm_units", 1, 4096)
        check_int(self.lstm_layers, "lstm_layers", 1, 8)
        check_int(self.max_length, "max_length", 3, 4096)
        check_int(self.augment, "augment", 0, 1000)
        check_number(self.dropout, "dropout", high=0.99)
        for name in ("mask_prob", "replace_prob", "ngram_prob", "gold_weight"):
            check_number(getattr(self, name), name, high=1.0)
        check_number(self.temperature, "temperature", strict=True, high=100.0)
        if self.mask_prob + self.replace_prob > 1:
            raise BertLSTMError("`mask_prob` and `replace_prob` together must be at most 1", "replace_prob")

    def check_training(self, training: TrainConfig) -> None:
        if self.teacher is None:
            raise BertLSTMError("a student needs its `teacher`: a classifier's model folder, Hub id or export")

    def check_sources(self) -> list[Path]:
        """The teacher found, and a classifier: its files (a run's output never replaces them)."""
        if self.teacher is None:
            raise BertLSTMError("a student needs its `teacher`: a classifier's model folder, Hub id or export")
        return find_teacher(self.teacher).files


@dataclass(frozen=True)
class StudentData(ClassifyData):
    """The classifier's labelled tables, and texts without labels that the teacher labels for the student."""

    unlabeled: tuple[str, ...] = setting(
        (), "a file of texts without labels for the transfer set (repeatable)", metavar="FILE", repeat=True
    )

    FILES: ClassVar[tuple[str, ...]] = ("train", "dev", "test", "unlabeled")

    def files(self) -> list[str]:
        return [*super().files(), *self.unlabeled]

    def labelled(self, path: str) -> bool:
        return path not in self.unlabeled
