"""Token tagging (named entities): a tag per word, BERT → BiLSTM → CRF.

``config.py`` (settings), ``checks.py`` (files checked from their first line), ``data.py`` (CoNLL and JSON
Lines, tag schemes), ``windows.py`` (words laid out in encoder windows, datasets), ``crf.py``, ``model.py``,
``metrics.py`` (seqeval), ``estimator.py`` (``BertLSTMTagger``), ``predictor.py`` (the back-end side: sentences or
texts in, tags and entities out) and ``export.py`` (the ONNX graph). This module is the task's entry in the
registry; it imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core.task import Task
from .checks import check_file, output_kind
from .config import TagData, TaggerConfig
from .data import read_run_data

if TYPE_CHECKING:
    from ...core.backends import Predictor
    from ...core.estimator import Estimator


def _estimator() -> type[Estimator]:
    from .estimator import BertLSTMTagger  # torch and transformers: only when a model is built or loaded

    return BertLSTMTagger


def _predictor() -> type[Predictor]:
    from .predictor import TaggerPredictor  # seqeval and pandas: only when a model is used

    return TaggerPredictor


TASK = Task(
    name="tagging",
    aliases=("tag",),
    summary="tag the words of sentences (CoNLL or JSON Lines files of tokens and tags)",
    config=TaggerConfig,
    data=TagData,
    check_file=check_file,
    output_kind=output_kind,
    read_run_data=read_run_data,
    estimator=_estimator,
    predictor=_predictor,
)
