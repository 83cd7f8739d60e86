"""Distillation: a trained classifier (the teacher) taught to a student that needs no encoder — word-piece
embeddings, an LSTM, a linear head — trained on the teacher's logits over a transfer set (Tang et al. 2019).

``config.py`` (settings), ``teacher.py`` (the teacher found, its tokenizer, embeddings and logits, cached),
``augment.py`` (the transfer set), ``model.py``, ``estimator.py`` (``LSTMStudent``), ``predictor.py`` and
``export.py``. A student reads the classifier's files and answers as a classifier does, so it builds on the
classification task. This module is the task's entry in the registry; it imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.config import TrainConfig
from ...core.task import RunData, Task
from ..classify.checks import check_file, output_kind
from .config import StudentConfig, StudentData

if TYPE_CHECKING:
    from ...core.backends import Predictor
    from ...core.estimator import Estimator


def _estimator() -> type[Estimator]:
    from .estimator import LSTMStudent  # torch: only when a model is built or loaded

    return LSTMStudent


def _predictor() -> type[Predictor]:
    from .predictor import StudentPredictor  # pandas: only when a model is used

    return StudentPredictor


def _read_run_data(data: Any, model: Any, training: TrainConfig) -> RunData:
    from .data import read_run_data  # pandas: only when files are read

    return read_run_data(data, model, training)


TASK = Task(
    name="student",
    aliases=("distill",),
    summary="distil a trained classifier into an LSTM that needs no encoder (`bertlstm distill`)",
    config=StudentConfig,
    data=StudentData,
    check_file=check_file,
    output_kind=output_kind,
    read_run_data=_read_run_data,
    estimator=_estimator,
    predictor=_predictor,
)
