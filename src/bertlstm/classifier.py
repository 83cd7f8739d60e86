"""The user-facing classifier: ``fit``, ``predict``, ``predict_proba``, ``evaluate`` and saved folders.

It puts the shared parts together: settings (:mod:`config`), labels (:mod:`labels`), datasets and the
feature cache, the model (:mod:`modeling`), the trainer and its callbacks, and the model folder.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit, softmax

from .callbacks import Checkpoint, EarlyStopping, KeepBest, LogEpoch
from .config import ModelConfig, TrainConfig, check_together
from .data import TokenDataset, split_dev, tokenize
from .device import resolve_device
from .encoders import check_max_length, load_encoder
from .errors import BertLSTMError
from .labels import Labels
from .metrics import full_report, multilabel_metrics, multilabel_report, quick_metrics, tune_thresholds
from .model_folder import history_from_csv, history_to_csv, load_model_folder, save_model_folder
from .modeling import BertLSTMModel
from .predict import predict_logits

logger = logging.getLogger(__name__)
TASK = "classification"
RECORDS = ("history.csv", "metrics.json")  # the training record saved beside the model
CPU_PREDICT_BATCH = 32


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword options as (ModelConfig fields, TrainConfig fields); an unknown name is a TypeError."""
    model_fields, train_fields = ModelConfig.__dataclass_fields__, TrainConfig.__dataclass_fields__
    unknown = set(options) - set(model_fields) - set(train_fields)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return (
        {k: v for k, v in options.items() if k in model_fields},
        {k: v for k, v in options.items() if k in train_fields},
    )


class BertLSTMClassifier:
    """A BERT-family encoder feeding an LSTM, with a scikit-learn-like interface.

    Example:
        >>> clf = BertLSTMClassifier(mode="frozen", epochs=3)
        >>> clf.fit(texts, labels)
        >>> clf.predict_proba(["This was alright"])
        >>> clf.save_pretrained("my-model")
        >>> clf = BertLSTMClassifier.from_pretrained("my-model")

    Args:
        mode: ``"frozen"``, ``"pooled"`` or ``"finetune"``.
        encoder: ``"minilm"`` (the packaged all-MiniLM-L6-v2), a local model folder or a hub id.
        **options: any field of :class:`ModelConfig` or :class:`TrainConfig` (``epochs=3``, ...).
    """

    def __init__(self, mode: str = "frozen", encoder: str = "minilm", **options: Any) -> None:
        model_options, train_options = split_options(options)
        config = ModelConfig.from_dict({"mode": mode, "encoder": encoder, **model_options})
        self._set_configs(config, TrainConfig.from_dict(train_options))

    @classmethod
    def from_configs(cls, config: ModelConfig, training: TrainConfig) -> BertLSTMClassifier:
        clf = cls.__new__(cls)
        clf._set_configs(config, training)
        return clf

    def _set_configs(self, config: ModelConfig, training: TrainConfig) -> None:
        check_together(config, training)
        self.config, self.train_config = config, training
        self.model: BertLSTMModel | None = None
        self.tokenizer: Any = None
        self.labels: Labels | None = None  # learnt in fit(): names and, multi-label, thresholds
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.device = torch.device("cpu")

    @property
    def label_names(self) -> list[str]:
        return list(self.labels.names) if self.labels else []

    @property
    def metric(self) -> str:
        """The dev metric that picks the best epoch."""
        if self.train_config.metric != "auto":
            return self.train_config.metric
        return "macro_f1" if self.config.multi_label else "accuracy"

    # --- training -----------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        dev_texts: Sequence[str] | None = None,
        dev_labels: Sequence[Any] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Any] = (),
    ) -> BertLSTMClassifier:
        """Train on ``texts``/``labels``; without a dev set, a stratified ``dev_fraction`` is held out.

        Labels are class names (or numbers); with ``multi_label``, lists of names. With ``checkpoint_dir``, a
        checkpoint is written there after each epoch, and one already there is resumed from. ``callbacks`` are
        :class:`~bertlstm.callbacks.Callback` objects or functions called with each epoch's history row.
        """
        cfg, multi = self.train_config, self.config.multi_label
        texts, labels = list(texts), Labels.clean(labels, multi, "training labels")
        if len(texts) != len(labels):
            raise BertLSTMError(f"{len(texts)} texts but {len(labels)} labels")
        self.labels = Labels.from_training(labels, multi)
        self.labels.class_weights(cfg.class_weight, [])  # as many weights as classes, before any work
        if dev_texts is None:
            texts, dev_texts, labels, dev_labels = split_dev(texts, labels, cfg.dev_fraction, cfg.seed)
        dev = list(dev_texts), Labels.clean([] if dev_labels is None else dev_labels, multi, "dev labels")
        self._build_model()
        train_texts, train_y = self._targets(texts, labels, "training data")
        dev_texts, dev_y = self._targets(*dev, "dev data")
        best = KeepBest(self.metric)
        trainer = self._trainer(train_y, [LogEpoch(), best, *callbacks], checkpoint_dir)
        start = time.perf_counter()
        with trainer.accelerator.main_process_first():  # one process builds the feature cache
            train_set = self._dataset(train_texts, train_y, "training texts", trainer.accelerator.device)
            dev_set = self._dataset(dev_texts, dev_y, "dev texts", trainer.accelerator.device)
        prepare_seconds = time.perf_counter() - start  # tokenizing, and building or reading the feature cache
        self.history = trainer.fit(train_set, dev_set)
        self.device = trainer.accelerator.device
        self._record(best.best, len(train_set), dev_set, prepare_seconds)
        return self

    def _build_model(self) -> None:
        from accelerate.utils import set_seed

        set_seed(self.train_config.seed)
        encoder, self.tokenizer = load_encoder(self.config.encoder)
        check_max_length(self.config.encoder, self.config.max_length, encoder.config)
        self.model = BertLSTMModel(self.config, encoder, len(self._require_labels()))

    def _trainer(self, targets: list[Any], callbacks: list[Any], checkpoint_dir: str | os.PathLike | None) -> Any:
        """A Trainer with the class weights of ``targets``; checkpoints and early stopping after ``callbacks``."""
        from .training import Trainer  # only here: prediction never imports the training loop

        cfg = self.train_config
        if checkpoint_dir is not None:
            callbacks.append(Checkpoint(checkpoint_dir))
        if cfg.patience:
            callbacks.append(EarlyStopping(self.metric, cfg.patience))
        weight = self._require_labels().class_weights(cfg.class_weight, targets)
        loss_weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
        return Trainer(self.model, cfg, score=self._score, callbacks=callbacks, loss_weight=loss_weight)

    def _targets(self, texts: list[str], labels: list[Any], where: str) -> tuple[list[str], list[Any]]:
        """The texts the model can learn from or be scored on, and their targets."""
        targets, keep = self._require_labels().encode(labels, where)
        return [texts[i] for i in keep], targets

    def _score(self, logits: np.ndarray, dataset: Any) -> dict[str, float]:
        """What each epoch reports on dev (multi-label at the untuned threshold 0.5)."""
        if self.config.multi_label:
            return multilabel_metrics(np.asarray(dataset.labels), expit(logits) >= 0.5)
        return quick_metrics(dataset.labels, logits.argmax(-1).tolist())

    def _record(self, best: dict[str, Any], n_train: int, dev_set: Any, prepare_seconds: float) -> None:
        """After training: tuned multi-label thresholds, and the metrics of the best epoch."""
        labels = self._require_labels()
        dev_logits = predict_logits(self._require_model(), dev_set, self.train_config.encode_batch_size, self.device)
        if self.config.multi_label:
            how = self.train_config.threshold
            self.labels = labels.tuned(tune_thresholds(np.asarray(dev_set.labels), expit(dev_logits), how))
        self.metrics = {
            "best_epoch": best["epoch"],
            **{k: v for k, v in best.items() if k.startswith("dev_")},
            "metric": self.metric,
            "n_train": n_train,
            "n_dev": len(dev_set),
            "prepare_seconds": prepare_seconds,
            "dev": self._report(dev_set.labels, dev_logits),
        }

    # --- datasets -----------------------------------------------------------------------------
    def _dataset(self, texts: list[str], targets: list[Any] | None, what: str, device: torch.device) -> Any:
        """Token ids, or for a frozen encoder with the cache on, its features from the feature cache."""
        model, cfg = self._require_model(), self.train_config
        if not (model.encoder_frozen and cfg.cache):
            return self._encode(texts, targets, pad_to=self.config.max_length if cfg.pad_to_max_length else None)
        from .feature_cache import CacheKey, FeatureCache, cached_dataset, encoder_fingerprint, texts_fingerprint

        model.to(device)
        key = CacheKey(
            encoder=self.config.encoder,
            encoder_hash=encoder_fingerprint(model.encoder, self.tokenizer),
            layers=self.config.layers,
            max_length=self.config.max_length,
            pooling="mean" if self.config.mode == "pooled" else "tokens",
            dtype=cfg.cache_dtype,
            texts_hash=texts_fingerprint(texts),
            n_texts=len(texts),
        )

        def encode(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return model.encode(input_ids.to(device), attention_mask.to(device))

        def input_ids() -> list[list[int]]:
            return tokenize(self.tokenizer, texts, self.config.max_length)

        return cached_dataset(
            FeatureCache(cfg.cache_dir),
            key,
            encode,
            model.feature_size,
            input_ids,
            self._pad_id,
            cfg.encode_batch_size,
            targets,
            what,
        )

    def _encode(
        self, texts: Sequence[str], targets: list[Any] | None = None, pad_to: int | None = None
    ) -> TokenDataset:
        return TokenDataset(tokenize(self.tokenizer, texts, self.config.max_length), targets, self._pad_id, pad_to)

    @property
    def _predict_batch(self) -> int:
        """Texts per forward pass when predicting: on a CPU small batches are fastest (SST-2 dev, 2 cores:
        2.7 s at 32 against 3.8 s at 256, see BENCHMARKS.md); elsewhere ``encode_batch_size``."""
        return CPU_PREDICT_BATCH if self.device.type == "cpu" else self.train_config.encode_batch_size

    @property
    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    # --- using it -----------------------------------------------------------------------------
    def _require_model(self) -> BertLSTMModel:
        if self.model is None:
            raise BertLSTMError("this classifier is not trained yet: call fit() or from_pretrained()")
        return self.model

    def _require_labels(self) -> Labels:
        if self.labels is None:
            raise BertLSTMError("this classifier is not trained yet: call fit() or from_pretrained()")
        return self.labels

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (N, C), columns in :attr:`label_names` order (independent sigmoids when
        multi-label, else a softmax)."""
        model = self._require_model()
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, model.num_labels), dtype=np.float32)
        logits = predict_logits(model, self._encode(texts), self._predict_batch, self.device)
        return (expit(logits) if self.config.multi_label else softmax(logits, axis=-1)).astype(np.float32)

    def predict(self, texts: Sequence[str]) -> list[Any]:
        """The label name per text (a list of names when multi-label)."""
        return self._require_labels().decode(self.predict_proba(texts))

    def evaluate(self, texts: Sequence[str], labels: Sequence[Any]) -> dict[str, Any]:
        """Accuracy, macro/weighted P/R/F1, per-class report and confusion matrix; when multi-label, micro
        and macro P/R/F1 and a per-label report, at the tuned thresholds.

        Rows whose label the model never saw in training are left out, with a warning.
        """
        labels = Labels.clean(labels, self.config.multi_label, "evaluation labels")
        known, targets = self._targets(list(texts), labels, "evaluation data")
        dataset = self._encode(known)
        logits = predict_logits(self._require_model(), dataset, self._predict_batch, self.device)
        return {**self._report(targets, logits), "n_unseen_label": len(labels) - len(known)}

    def _report(self, targets: list[Any], logits: np.ndarray) -> dict[str, Any]:
        """The full evaluation report from targets and logits (N, C)."""
        labels = self._require_labels()
        if self.config.multi_label:
            return multilabel_report(np.asarray(targets), labels.chosen(expit(logits)), labels.names)
        return full_report(targets, logits.argmax(-1).tolist(), labels.names)

    # --- folders ------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a self-contained model folder, atomically (a temporary folder renamed into place).

        An existing ``directory`` is replaced only when it is empty or a bertlstm model folder, unless
        ``overwrite``; the working folder and its parents never are.
        """
        model, labels = self._require_model(), self._require_labels()
        sections = {
            "task": TASK,
            "model": self.config.to_dict(),
            "labels": labels.to_dict(),
            "training": self.train_config.to_dict(),
        }
        records = {}
        if self.history:
            records["history.csv"] = history_to_csv(self.history)
        if self.metrics:
            records["metrics.json"] = json.dumps(self.metrics, indent=2) + "\n"
        return save_model_folder(
            directory, sections, model.head_state_dict(), model.encoder, self.tokenizer, records, overwrite
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str = "auto") -> BertLSTMClassifier:
        """Load a folder written by :meth:`save_pretrained` (its exact inverse): local files only, every
        checksum verified, safetensors only, no code from the folder ever run."""
        saved = load_model_folder(directory, RECORDS)
        where = f"{saved.folder / 'config.json'}: "
        if saved.meta.get("task", TASK) != TASK:
            raise BertLSTMError(f"{where}a {saved.meta['task']} model, not a text classifier")
        config = ModelConfig.from_dict(saved.meta["model"], where + "model: ")
        clf = cls.from_configs(config, TrainConfig.from_dict(saved.meta.get("training", {}), where + "training: "))
        clf.labels = Labels.from_dict(saved.meta["labels"], where + "labels")
        clf.device, clf.tokenizer = resolve_device(device), saved.tokenizer
        model = BertLSTMModel(config, saved.encoder, len(clf.labels))
        try:
            model.load_trainable_state_dict(saved.head_state)
        except (ValueError, RuntimeError) as err:  # other names or shapes: another model's weights
            first = str(err).strip().splitlines()[-1].strip()  # torch's last line names the tensor
            raise BertLSTMError(f"{saved.folder / 'model.safetensors'} does not match config.json: {first}") from None
        clf.model = model.to(clf.device).eval()
        clf.history = history_from_csv(saved.records["history.csv"]) if "history.csv" in saved.records else []
        clf.metrics = json.loads(saved.records["metrics.json"]) if "metrics.json" in saved.records else {}
        return clf
