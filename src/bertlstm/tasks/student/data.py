"""A distillation run's files: the classifier's labelled tables, read with its teacher's label kind
(multi-label or not), and the texts without labels."""

from __future__ import annotations

import warnings

from ...core.config import TrainConfig
from ...core.data import load_texts
from ...core.errors import BertLSTMError
from ...core.task import RunData
from ..classify.data import load_labelled
from ..classify.labels import Labels
from .config import StudentConfig, StudentData
from .teacher import find_teacher


def read_run_data(data: StudentData, model: StudentConfig, training: TrainConfig) -> RunData:
    """The tables read and their labels checked against the teacher's (at least one it knows), before any
    model is built; the unlabeled texts go to ``fit``'s ``unlabeled``."""
    if training.class_weight is not None:
        raise BertLSTMError("a student learns from its teacher's logits: `class_weight` does not apply", "class_weight")
    assert model.teacher is not None  # StudentConfig.check_training
    labels = Labels.from_dict(find_teacher(model.teacher).labels, f"the teacher {model.teacher}'s labels")
    separator = data.label_separator if labels.multi_label else None

    def read(path: str | None) -> tuple[list[str], list] | None:
        return None if path is None else load_labelled(path, data.text_column, data.label_column, separator)

    train, dev, test = read(data.train), read(data.dev), read(data.test)
    if train is None:
        raise BertLSTMError("a distillation run needs `train` data")
    with warnings.catch_warnings():  # the estimator says them, once, when it reads the labels
        warnings.simplefilter("ignore")
        for path, part in ((data.train, train), (data.dev, dev), (data.test, test)):
            if path and part is not None:
                labels.check_known(Labels.clean(part[1], labels.multi_label, path), path)
    unlabeled = [text for path in data.unlabeled for text in load_texts(path, data.text_column)]
    return RunData(train, dev, test, fit_options={"unlabeled": unlabeled})
