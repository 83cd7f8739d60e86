"""The user-facing classifier: a scikit-learn estimator with ``fit``, ``predict``, ``predict_proba``,
``score`` and ``evaluate``, saved as (and loaded from) a model folder, locally or on the Hugging Face Hub.

What it shares with every task (settings as keyword arguments, the fit skeleton, folders, the Hub, prediction
through a back end) is :class:`~bertlstm.core.estimator.Estimator`; what is its own is here: labels learnt from
the data, the BERT→LSTM model, datasets of texts, and classification metrics.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import expit
from sklearn.base import ClassifierMixin

from ...core.backends import plain_tokenizer
from ...core.config import TaskSettings, TrainConfig
from ...core.data import as_texts
from ...core.distributed import current_shard
from ...core.errors import BertLSTMError
from ...core.estimator import Estimator, NotTrainedError
from ...core.export_graph import ExportGraph
from ...core.model_card import CardInfo
from .config import ModelConfig
from .data import FeatureDataset, TextCut, TokenDataset, split_dev, texts_and_labels
from .export import export_graph
from .labels import Labels, kind_of
from .metrics import confident_errors, evaluation_report, multilabel_metrics, quick_metrics, tune_thresholds
from .model import BertLSTMModel
from .predictor import ClassifierPredictor


class BertLSTMClassifier(ClassifierMixin, Estimator):
    """A BERT-family encoder feeding an LSTM, as a scikit-learn classifier.

    Every field of :class:`ModelConfig` and :class:`~bertlstm.core.config.TrainConfig` is a keyword argument
    (``mode``, ``encoder``, ``lstm_units``, ``epochs``, ...), stored unchanged, so that ``get_params``,
    ``set_params`` and ``clone`` work; the settings are checked when :meth:`fit` starts. After fitting:
    ``classes_``, ``labels_``, ``model_``, ``tokenizer_``, ``history_``, ``metrics_`` and ``device_``.

    Example:
        >>> clf = BertLSTMClassifier(mode="frozen", epochs=3).fit(texts, labels)   # or fit(dataframe)
        >>> clf.predict(["This was alright"]), clf.predict_proba(["This was alright"])
        >>> clf.save_pretrained("my-model")
        >>> clf = BertLSTMClassifier.from_pretrained("my-model")     # or a Hub id: "user/name"
    """

    task = "classification"
    noun = "classifier"
    config_class: ClassVar[type[TaskSettings]] = ModelConfig
    predictor_class = ClassifierPredictor
    card = CardInfo("text-classification", "BertLSTMClassifier", "predict", "BERT→LSTM text classifier")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of texts (or a table with a text column)
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True
        return tags

    @property
    def label_names(self) -> list[str]:
        return list(self.labels_.names) if getattr(self, "labels_", None) else []

    # --- training (the hooks of Estimator.fit) ----------------------------------------------------
    predictor_: ClassifierPredictor

    def fit(  # type: ignore[override]  # the dev arguments are named for the task's data
        self, X: Any, y: Any = None, dev_texts: Any = None, dev_labels: Any = None, **options: Any
    ) -> BertLSTMClassifier:
        """Train on texts ``X`` and labels ``y``, or on a table (DataFrame, ``datasets.Dataset``) holding both
        (its columns named by ``text_column=`` / ``label_column=`` when they are not found); without a dev set
        a stratified ``dev_fraction`` is held out.

        Labels are class names or numbers; with ``multi_label``, lists of names or a 0/1 matrix (N, C). See
        :meth:`~bertlstm.core.estimator.Estimator.fit` for ``checkpoint_dir`` and ``callbacks``.
        """
        return super().fit(X, y, dev_texts, dev_labels, **options)

    def _learn(
        self,
        X: Any,
        y: Any,
        dev_X: Any,
        dev_y: Any,
        config: ModelConfig,
        training: TrainConfig,
        text_column: str | None = None,
        label_column: str | None = None,
    ) -> tuple[tuple[list[str], list[Any]], tuple[list[str], list[Any]]]:
        texts, raw = texts_and_labels(X, y, text_column, label_column, "training data")
        if not config.multi_label and kind_of(raw) == "float":
            raise BertLSTMError("Unknown label type: continuous. bertlstm classifies; give class labels")
        self.labels_, labels = Labels.learn(raw, config.multi_label)
        self.labels_.class_weights(training.class_weight, [])  # as many weights as classes, before any work
        if dev_X is None:
            texts, dev_texts, labels, dev = split_dev(texts, labels, training.dev_fraction, training.seed)
        else:
            dev_texts, dev_raw = texts_and_labels(dev_X, dev_y, text_column, label_column, "dev data")
            dev = Labels.clean(dev_raw, config.multi_label, "dev labels")
        self.text_column_ = text_column
        train, dev_set = self._targets(texts, labels, "training data"), self._targets(list(dev_texts), dev, "dev data")
        self.labels_.warn_untrained(train[1], dev_set[1])
        return train, dev_set

    def _targets(self, texts: list[str], labels: list[Any], where: str) -> tuple[list[str], list[Any]]:
        """The texts the model can learn from or be scored on, and their targets."""
        targets, keep = self.labels_.encode(labels, where)
        return [texts[i] for i in keep], targets

    def _new_model(self, config: ModelConfig, encoder: Any) -> BertLSTMModel:
        return BertLSTMModel(config, encoder, len(self.labels_))

    def _metric(self, training: TrainConfig) -> str:
        if training.metric != "auto":
            return training.metric
        return "macro_f1" if self.labels_.multi_label else "accuracy"

    def _loss_weight(self, train: tuple[list[str], list[Any]]) -> torch.Tensor | None:
        weight = self.labels_.class_weights(self.training_.class_weight, train[1])
        return None if weight is None else torch.tensor(weight, dtype=torch.float32)

    def _dataset(self, examples: tuple[list[str], list[Any]], what: str, trainer: Any = None) -> Any:
        """Token ids, or for a frozen (or partly fine-tuned) encoder with the cache on, its features (or the
        frozen layers' states) from the feature cache."""
        texts, targets = examples
        config = self.model_.config
        cut = TextCut(config.max_length, config.long_text)
        tokenizer = plain_tokenizer(self.tokenizer_, cut.truncation)
        store = self._cached(texts, lambda: cut(tokenizer, texts), f"{what} texts", trainer)
        if store is not None:
            return FeatureDataset(store, targets)
        pad_to = config.max_length if self.training_.pad_to_max_length else None
        return TokenDataset(cut(tokenizer, texts), targets, self.pad_id, pad_to)

    def _score(self, logits: np.ndarray, dataset: Any) -> dict[str, float]:
        """What each epoch reports on dev; multi-label at thresholds tuned on dev by the ``threshold`` rule, as
        the saved model decides (at 0.5, rare labels' F1 stays 0 for epochs, and early stopping, the best epoch
        and a search's pruning would compare zeros)."""
        if self.labels_.multi_label:
            targets, proba = np.asarray(dataset.labels), expit(logits)
            thresholds = tune_thresholds(targets, proba, self.training_.threshold)
            return multilabel_metrics(targets, proba >= np.asarray(thresholds))
        return quick_metrics(dataset.labels, logits.argmax(-1).tolist())

    def _after_fit(self, dev: tuple[list[str], list[Any]], dev_set: Any, logits: np.ndarray) -> dict[str, Any]:
        """Multi-label thresholds tuned on dev; the classes; the dev report, with the texts the model got
        most confidently wrong (for ``bertlstm report``, whose page explains them: not here, where it would add
        seconds to every training)."""
        if self.labels_.multi_label:
            thresholds = tune_thresholds(np.asarray(dev_set.labels), expit(logits), self.training_.threshold)
            self.labels_ = self.labels_.tuned(thresholds)
            self.classes_ = self.labels_.classes()
            return evaluation_report(self.labels_, dev_set.labels, logits)
        self.classes_ = self.labels_.classes()
        report = evaluation_report(self.labels_, dev_set.labels, logits)
        errors = confident_errors(dev[0], dev_set.labels, logits, self.labels_.names)
        return {**report, "confident_errors": errors}

    def _labels_section(self) -> dict[str, Any]:
        return self._require_labels().to_dict()

    def _restore_labels(self, section: dict[str, Any], where: str) -> None:
        self.labels_ = Labels.from_dict(section, where)
        self.classes_ = self.labels_.classes()

    # --- using it elsewhere: a back end's description, an export ----------------------------------
    def describe(self) -> dict[str, Any]:
        multi = self._require_labels().multi_label
        return {**super().describe(), "activation": "sigmoid" if multi else "softmax"}

    def export_graph(self) -> ExportGraph:
        """The model as one ONNX-exportable graph: token ids and mask -> logits."""
        return export_graph(self._require_model())

    # --- using it -----------------------------------------------------------------------------
    def _require_labels(self) -> Labels:
        if getattr(self, "labels_", None) is None:
            raise NotTrainedError("this classifier is not trained yet: call fit() or from_pretrained()")
        return self.labels_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C), columns in ``classes_`` order (independent sigmoids when multi-label,
        else a softmax). ``X``: texts, or a table with a text column."""
        self._require_model()
        return self.predictor_.predict_proba(as_texts(X, getattr(self, "text_column_", None)))

    def explain(
        self, X: Any, method: str | None = None, steps: int = 32, label: str | None = None
    ) -> list[dict[str, Any]]:
        """Why, per text: each word's score for the predicted label (``label``: that one), as ``explanation``
        (``[{"word", "score"}]``), with ``explained`` and, for integrated gradients, ``completeness``; ``method``:
        integrated-gradients (the default), gradient-x-input or occlusion (see :mod:`bertlstm.core.attribution`)."""
        self._require_model()
        return self.predictor_.explain(as_texts(X, getattr(self, "text_column_", None)), method, steps, label)

    def predict(self, X: Any) -> np.ndarray:
        """The class per text (an array like ``classes_``); multi-label: a 0/1 matrix (N, C) at the tuned
        thresholds."""
        labels, proba = self._require_labels(), self.predict_proba(X)
        if labels.multi_label:
            return labels.chosen(proba).astype(int)
        return self.classes_[proba.argmax(-1)]

    def evaluate(self, X: Any, y: Any = None) -> dict[str, Any]:
        """Accuracy, macro/weighted P/R/F1, per-class report and confusion matrix; when multi-label, micro
        and macro P/R/F1 and a per-label report, at the tuned thresholds.

        Rows whose label the model never saw in training are left out, with a warning. Under ``torchrun``
        every process scores a share.
        """
        self._require_model()
        texts, raw = texts_and_labels(X, y, getattr(self, "text_column_", None), None, "evaluation data")
        return self.predictor_.evaluate(texts, raw, current_shard())
