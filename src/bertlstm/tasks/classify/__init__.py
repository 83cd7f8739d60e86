"""Text classification: a label (or, multi-label, a set of labels) per text.

``config.py`` (settings), ``checks.py`` (files checked from their first line), ``labels.py`` (what is learnt
of the labels), ``data.py`` (tables of labelled texts, datasets), ``model.py`` (the BERT→LSTM model),
``metrics.py``, ``estimator.py`` (``BertLSTMClassifier``), ``predictor.py`` (the back-end side: texts in, labels
out) and ``export.py`` (the ONNX graph). This module is the task's entry in the registry; it imports nothing
heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.config import TrainConfig
from ...core.task import RunData, Task
from .checks import check_file, output_kind
from .config import ClassifyData, ModelConfig

if TYPE_CHECKING:
    from ...core.backends import Predictor
    from ...core.estimator import Estimator


def _estimator() -> type[Estimator]:
    from .estimator import BertLSTMClassifier  # torch and transformers: only when a model is built or loaded

    return BertLSTMClassifier


def _predictor() -> type[Predictor]:
    from .predictor import ClassifierPredictor  # scikit-learn and scipy: only when a model is used

    return ClassifierPredictor


def _read_run_data(data: Any, model: Any, training: TrainConfig) -> RunData:
    from .data import read_run_data  # pandas: only when files are read

    return read_run_data(data, model, training)


TASK = Task(
    name="classification",
    aliases=("classify",),
    summary="classify texts (tables of texts and labels)",
    config=ModelConfig,
    data=ClassifyData,
    check_file=check_file,
    output_kind=output_kind,
    read_run_data=_read_run_data,
    estimator=_estimator,
    predictor=_predictor,
)
