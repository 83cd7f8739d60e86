"""The user-facing classifier: a scikit-learn estimator with ``fit``, ``predict``, ``predict_proba``,
``score`` and ``evaluate``, saved as (and loaded from) a model folder, locally or on the Hugging Face Hub.

It puts the shared parts together: settings (:mod:`config`), labels (:mod:`labels`), datasets and the
feature cache, the model (:mod:`modeling`), the trainer and its callbacks, and the model folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from .callbacks import Checkpoint, EarlyStopping, KeepBest, LogEpoch
from .config import ModelConfig, TrainConfig, check_together
from .data import TokenDataset, as_texts, split_dev, texts_and_labels, tokenize
from .device import resolve_device
from .distributed import current_shard
from .encoders import check_max_length, load_encoder, resolve_training
from .errors import BertLSTMError
from .labels import Labels, kind_of
from .metrics import full_report, multilabel_metrics, multilabel_report, quick_metrics, tune_thresholds
from .model_folder import load_model_folder, load_trained, save_trained
from .modeling import BertLSTMModel
from .predict import predict_logits, sharded_logits

logger = logging.getLogger(__name__)
TASK = "classification"
RECORDS = ("history.csv", "metrics.json")  # the training record saved beside the model
CPU_PREDICT_BATCH = 32
SETTINGS = {f.name: f for f in (*dataclasses.fields(ModelConfig), *dataclasses.fields(TrainConfig))}


def _default(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[operator]


class NotTrainedError(BertLSTMError, NotFittedError):
    """Predicting before ``fit`` or ``from_pretrained``: a BertLSTMError, and scikit-learn's NotFittedError."""


class BertLSTMClassifier(ClassifierMixin, BaseEstimator):
    """A BERT-family encoder feeding an LSTM, as a scikit-learn classifier.

    Every field of :class:`ModelConfig` and :class:`TrainConfig` is a keyword argument (``mode``, ``encoder``,
    ``lstm_units``, ``epochs``, ...), stored unchanged, so that ``get_params``, ``set_params`` and ``clone``
    work; the settings are checked when :meth:`fit` starts. After fitting: ``classes_``, ``labels_``,
    ``model_``, ``tokenizer_``, ``history_``, ``metrics_`` and ``device_``.

    Example:
        >>> clf = BertLSTMClassifier(mode="frozen", epochs=3).fit(texts, labels)   # or fit(dataframe)
        >>> clf.predict(["This was alright"]), clf.predict_proba(["This was alright"])
        >>> clf.save_pretrained("my-model")
        >>> clf = BertLSTMClassifier.from_pretrained("my-model")     # or a Hub id: "user/name"
    """

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TypeError(f"BertLSTMClassifier got unexpected keyword argument(s): {', '.join(unknown)}")
        for name, field in SETTINGS.items():
            setattr(self, name, settings.get(name, _default(field)))

    @property
    def config(self) -> ModelConfig:
        """The model settings as given now (checked)."""
        return ModelConfig.from_dict({f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)})

    @property
    def train_config(self) -> TrainConfig:
        """The training settings as given now (checked)."""
        return TrainConfig.from_dict({f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)})

    def _configs(self) -> tuple[ModelConfig, TrainConfig]:
        config, training = self.config, self.train_config
        check_together(config, training)
        return config, training

    @property
    def label_names(self) -> list[str]:
        return list(self.labels_.names) if getattr(self, "labels_", None) else []

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of texts (or a table with a text column)
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True
        return tags

    # --- training -----------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        dev_texts: Any = None,
        dev_labels: Any = None,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Any] = (),
    ) -> BertLSTMClassifier:
        """Train on texts ``X`` and labels ``y``, or on a table (DataFrame, ``datasets.Dataset``) holding both;
        without a dev set a stratified ``dev_fraction`` is held out.

        Labels are class names or numbers; with ``multi_label``, lists of names or a 0/1 matrix (N, C). With
        ``checkpoint_dir``, a checkpoint is written there after each epoch, and one already there is resumed
        from. ``callbacks`` are :class:`~bertlstm.callbacks.Callback` objects or functions of each epoch's row.
        """
        config, training = self._configs()
        texts, raw = texts_and_labels(X, y, text_column, label_column, "training data")
        if not config.multi_label and kind_of(raw) == "float":
            raise BertLSTMError("Unknown label type: continuous. bertlstm classifies; give class labels")
        self.labels_, labels = Labels.learn(raw, config.multi_label)
        self.labels_.class_weights(training.class_weight, [])  # as many weights as classes, before any work
        if dev_texts is None:
            texts, dev_texts, labels, dev = split_dev(texts, labels, training.dev_fraction, training.seed)
        else:
            dev_texts, dev_raw = texts_and_labels(dev_texts, dev_labels, text_column, label_column, "dev data")
            dev = Labels.clean(dev_raw, config.multi_label, "dev labels")
        self.text_column_ = text_column
        self._build_model(config, training)
        training = self.training_
        train_texts, train_y = self._targets(texts, labels, "training data")
        dev_texts, dev_y = self._targets(list(dev_texts), dev, "dev data")
        best = KeepBest(self._metric(config, training))
        trainer = self._trainer(training, train_y, [LogEpoch(), best, *callbacks], checkpoint_dir)
        start = time.perf_counter()
        train_set = self._dataset(train_texts, train_y, "training texts", trainer)
        dev_set = self._dataset(dev_texts, dev_y, "dev texts", trainer)
        prepare_seconds = time.perf_counter() - start  # tokenizing, and building or reading the feature cache
        self.history_ = trainer.fit(train_set, dev_set)
        self.device_ = trainer.accelerator.device
        self._record(best.best, len(train_set), dev_set, trainer.eval_step(dev_set), prepare_seconds)
        return self

    @staticmethod
    def _metric(config: ModelConfig, training: TrainConfig) -> str:
        """The dev metric that picks the best epoch."""
        if training.metric != "auto":
            return training.metric
        return "macro_f1" if config.multi_label else "accuracy"

    def _build_model(self, config: ModelConfig, training: TrainConfig) -> None:
        from accelerate.utils import set_seed

        set_seed(training.seed)
        encoder, self.tokenizer_ = load_encoder(config.encoder)
        check_max_length(config.encoder, config.max_length, encoder.config)
        self.model_ = BertLSTMModel(config, encoder, len(self.labels_))
        # the settings this model was trained with (encoder_lr auto resolved), whatever set_params does later
        self.training_ = resolve_training(training, encoder.config, config.mode)
        self.metrics_: dict[str, Any] = {}

    def _trainer(
        self, training: TrainConfig, targets: list[Any], callbacks: list[Any], checkpoint_dir: str | os.PathLike | None
    ) -> Any:
        """A Trainer with the class weights of ``targets``; checkpoints and early stopping after ``callbacks``."""
        from .training import Trainer  # only here: prediction never imports the training loop

        if checkpoint_dir is not None:
            callbacks.append(Checkpoint(checkpoint_dir))
        if training.patience:
            callbacks.append(EarlyStopping(self._metric(self.model_.config, training), training.patience))
        weight = self.labels_.class_weights(training.class_weight, targets)
        loss_weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
        return Trainer(self.model_, training, score=self._score, callbacks=callbacks, loss_weight=loss_weight)

    def _targets(self, texts: list[str], labels: list[Any], where: str) -> tuple[list[str], list[Any]]:
        """The texts the model can learn from or be scored on, and their targets."""
        targets, keep = self._require_labels().encode(labels, where)
        return [texts[i] for i in keep], targets

    def _score(self, logits: np.ndarray, dataset: Any) -> dict[str, float]:
        """What each epoch reports on dev (multi-label at the untuned threshold 0.5)."""
        if self._require_labels().multi_label:
            return multilabel_metrics(np.asarray(dataset.labels), expit(logits) >= 0.5)
        return quick_metrics(dataset.labels, logits.argmax(-1).tolist())

    def _record(
        self, best: dict[str, Any], n_train: int, dev_set: Any, dev_logits: np.ndarray, prepare_seconds: float
    ) -> None:
        """After training: tuned multi-label thresholds, the classes, and the metrics of the best epoch."""
        if self.labels_.multi_label:
            thresholds = tune_thresholds(np.asarray(dev_set.labels), expit(dev_logits), self.training_.threshold)
            self.labels_ = self.labels_.tuned(thresholds)
        self.classes_ = self.labels_.classes()
        self.metrics_ = {
            "best_epoch": best["epoch"],
            **{k: v for k, v in best.items() if k.startswith("dev_")},
            "metric": self._metric(self.model_.config, self.training_),
            "n_train": n_train,
            "n_dev": len(dev_set),
            "prepare_seconds": prepare_seconds,
            "dev": self._report(dev_set.labels, dev_logits),
        }

    # --- datasets -----------------------------------------------------------------------------
    def _dataset(self, texts: list[str], targets: list[Any] | None, what: str, trainer: Any) -> Any:
        """Token ids, or for a frozen (or partly fine-tuned) encoder with the cache on, its features (or the
        frozen layers' states) from the feature cache, built by the run's processes together."""
        model, cfg, config = self._require_model(), self.training_, self.model_.config
        device = trainer.accelerator.device
        if not (model.cacheable and cfg.cache):
            return self._encode(texts, targets, pad_to=config.max_length if cfg.pad_to_max_length else None)
        from .feature_cache import model_features

        model.to(device)

        def input_ids() -> list[list[int]]:
            return tokenize(self.tokenizer_, texts, config.max_length)

        return model_features(model, self.tokenizer_, texts, input_ids, targets, cfg, device, what, trainer.shard)

    def _encode(
        self, texts: Sequence[str], targets: list[Any] | None = None, pad_to: int | None = None
    ) -> TokenDataset:
        max_length = self._require_model().config.max_length
        return TokenDataset(tokenize(self.tokenizer_, texts, max_length), targets, self._pad_id, pad_to)

    @property
    def _predict_batch(self) -> int:
        """Texts per forward pass when predicting: on a CPU small batches are fastest (SST-2 dev, 2 cores:
        2.7 s at 32 against 3.8 s at 256, see BENCHMARKS.md); elsewhere ``encode_batch_size``."""
        chosen = getattr(self, "predict_batch_size_", None)  # set by a prediction back end, or not at all
        if chosen:
            return int(chosen)
        return CPU_PREDICT_BATCH if self.device_.type == "cpu" else self.training_.encode_batch_size

    @property
    def _pad_id(self) -> int:
        return self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else 0

    # --- using it -----------------------------------------------------------------------------
    def _require_model(self) -> BertLSTMModel:
        if getattr(self, "model_", None) is None:
            raise NotTrainedError("this classifier is not trained yet: call fit() or from_pretrained()")
        return self.model_

    def _require_labels(self) -> Labels:
        if getattr(self, "labels_", None) is None:
            raise NotTrainedError("this classifier is not trained yet: call fit() or from_pretrained()")
        return self.labels_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C), columns in ``classes_`` order (independent sigmoids when multi-label,
        else a softmax). ``X``: texts, or a table with a text column."""
        model = self._require_model()
        texts = as_texts(X, getattr(self, "text_column_", None))
        if not texts:
            return np.zeros((0, model.num_labels), dtype=np.float32)
        logits = predict_logits(model, self._encode(texts), self._predict_batch, self.device_)
        return (expit(logits) if model.config.multi_label else softmax(logits, axis=-1)).astype(np.float32)

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

        Rows whose label the model never saw in training are left out, with a warning.
        """
        texts, raw = texts_and_labels(X, y, getattr(self, "text_column_", None), None, "evaluation data")
        labels = Labels.clean(raw, self._require_labels().multi_label, "evaluation labels")
        known, targets = self._targets(texts, labels, "evaluation data")
        model, dataset = self._require_model(), self._encode(known)
        logits = sharded_logits(model, dataset, self._predict_batch, self.device_, current_shard())  # under torchrun
        return {**self._report(targets, logits), "n_unseen_label": len(labels) - len(known)}

    def _report(self, targets: list[Any], logits: np.ndarray) -> dict[str, Any]:
        """The full evaluation report from targets and logits (N, C)."""
        labels = self._require_labels()
        if labels.multi_label:
            return multilabel_report(np.asarray(targets), labels.chosen(expit(logits)), labels.names)
        return full_report(targets, logits.argmax(-1).tolist(), labels.names)

    # --- folders ------------------------------------------------------------------------------
    def save_pretrained(
        self, directory: str | os.PathLike, overwrite: bool = False, repo_id: str | None = None
    ) -> Path:
        """Write a self-contained model folder, with a Hub model card, atomically (a temporary folder
        renamed into place). ``repo_id`` names the model in its card (``push_to_hub`` gives it).

        An existing ``directory`` is replaced only when it is empty or a bertlstm model folder, unless
        ``overwrite``; the working folder and its parents never are.
        """
        model, labels = self._require_model(), self._require_labels()
        sections = {
            "task": TASK,
            "model": model.config.to_dict(),
            "labels": labels.to_dict(),
            "training": self.training_.to_dict(),
        }
        history, metrics = getattr(self, "history_", []), getattr(self, "metrics_", {})
        return save_trained(directory, sections, model, self.tokenizer_, history, metrics, repo_id, overwrite)

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None) -> str:
        """Save to a temporary folder and upload it to the Hugging Face Hub as ``repo_id``; returns its URL."""
        from .hub import push_folder

        return push_folder(lambda folder: self.save_pretrained(folder, repo_id=repo_id), repo_id, private, token)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "auto") -> BertLSTMClassifier:
        """Load a folder written by :meth:`save_pretrained` (its exact inverse), or a Hub repository
        (``user/name``, downloaded to the Hugging Face cache): every checksum verified, safetensors only, no
        code from the folder ever run."""
        from .hub import local_folder

        saved = load_model_folder(local_folder(name_or_path), RECORDS)
        where = f"{saved.folder / 'config.json'}: "
        if saved.meta.get("task", TASK) != TASK:
            raise BertLSTMError(f"{where}a {saved.meta['task']} model, not a text classifier")
        config = ModelConfig.from_dict(saved.meta["model"], where + "model: ")
        training = TrainConfig.from_dict(saved.meta.get("training", {}), where + "training: ")
        check_together(config, training)
        clf = cls(**config.as_kwargs(), **training.as_kwargs())
        clf.labels_ = Labels.from_dict(saved.meta["labels"], where + "labels")
        clf.classes_, clf.training_ = clf.labels_.classes(), training
        clf.device_, clf.tokenizer_ = resolve_device(device), saved.tokenizer
        model = BertLSTMModel(config, saved.encoder, len(clf.labels_))
        clf.history_, clf.metrics_ = load_trained(model, saved)
        clf.model_ = model.to(clf.device_).eval()
        return clf


# scikit-learn reads an estimator's settings from its __init__ signature: spell every setting out there.
BertLSTMClassifier.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_default(f)) for n, f in SETTINGS.items()]
)
