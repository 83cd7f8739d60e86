"""Long documents: an LSTM over the vectors of a document's windows, so that texts longer than the encoder's
window are read whole. It refines the classification task: ``long_text`` chunks selects it.

``config.py`` (the classifier's settings, with the windows'), ``windows.py`` (documents cut into windows, the
dataset), ``model.py`` (the model, and its two halves for prediction), ``estimator.py``
(``BertLSTMDocumentClassifier``), ``predictor.py`` (windows encoded in fixed-size batches, then documents
read) and ``export.py`` (two ONNX graphs). Data files, labels and metrics are the classifier's. This module is
the task's entry in the registry; it imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.task import Task
from ..classify import TASK as CLASSIFICATION
from ..classify.config import ClassifyData
from .config import DocumentConfig

if TYPE_CHECKING:
    from ...core.backends import Predictor
    from ...core.estimator import Estimator


def _estimator() -> type[Estimator]:
    from .estimator import BertLSTMDocumentClassifier  # torch and transformers: only when a model is built or loaded

    return BertLSTMDocumentClassifier


def _predictor() -> type[Predictor]:
    from .predictor import DocumentPredictor  # scikit-learn and scipy: only when a model is used

    return DocumentPredictor


def _claims(model: dict[str, Any]) -> bool:
    return model.get("long_text") == "chunks"


TASK = Task(
    name="documents",
    aliases=("document",),
    summary="classify long documents, read whole in windows (long_text chunks)",
    config=DocumentConfig,
    data=ClassifyData,
    check_file=CLASSIFICATION.check_file,
    output_kind=CLASSIFICATION.output_kind,
    read_run_data=CLASSIFICATION.read_run_data,
    estimator=_estimator,
    predictor=_predictor,
    refines=CLASSIFICATION.name,
    claims=_claims,
)
