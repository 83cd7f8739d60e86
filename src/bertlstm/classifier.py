"""The user-facing classifier: ``fit``, ``predict``, ``predict_proba``, ``evaluate`` and saved folders."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from scipy.special import expit
from torch.utils.data import Dataset

from .config import ModelConfig, TrainConfig, parse_class_weight
from .data import (
    TokenDataset,
    encode_label_lists,
    encode_labels,
    label_names_of,
    split_dev,
    tidy_labels,
    tokenize,
)
from .device import resolve_device
from .encoders import check_max_length, load_encoder, load_saved_encoder
from .errors import BertLSTMError
from .feature_cache import CacheKey, FeatureCache, FeatureDataset, encoder_fingerprint, texts_fingerprint
from .metrics import full_report, multilabel_report, tune_thresholds
from .model_folder import (
    CONFIG_NAME,
    ENCODER_DIR,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    atomic_folder,
    check_files,
    check_output,
    digests,
    read_config,
)
from .modeling import BertLSTMModel
from .reports import write_plots
from .training import Trainer, predict_logits


def _split_kwargs(kwargs: dict[str, Any], strict: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(kwargs) - model_fields - train_fields
    if unknown and strict:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return (
        {k: v for k, v in kwargs.items() if k in model_fields},
        {k: v for k, v in kwargs.items() if k in train_fields},
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
        model_opts, train_opts = _split_kwargs(options)
        self.config = ModelConfig(mode=mode, encoder=encoder, **model_opts)
        self.train_config = TrainConfig(**train_opts)
        if self.train_config.metric == "micro_f1" and not self.config.multi_label:
            raise BertLSTMError("`metric` micro_f1 is for multi-label tasks; use accuracy or macro_f1", "metric")
        self.model: BertLSTMModel | None = None
        self.tokenizer = None
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.device = torch.device("cpu")

    @property
    def label_names(self) -> list[str]:
        return list(self.config.label_names)

    # --- training -----------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        dev_texts: Sequence[str] | None = None,
        dev_labels: Sequence[Any] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> BertLSTMClassifier:
        """Train on ``texts``/``labels``; without a dev set, a stratified ``dev_fraction`` is held out.

        Labels are class names (or integers); with ``multi_label``, lists of names. With ``checkpoint_dir``,
        a checkpoint is written there after each epoch, and one already there is resumed from. Each
        ``callbacks`` entry is called with every epoch's history row.
        """
        cfg, multi = self.train_config, self.config.multi_label
        texts, labels = list(texts), self._as_labels(labels)
        if len(texts) != len(labels):
            raise BertLSTMError(f"{len(texts)} texts but {len(labels)} labels")
        self._class_weights(label_names_of(labels, multi), [])  # one class, or weights for another count: stop now
        if dev_texts is None:
            texts, dev_texts, labels, dev_labels = split_dev(texts, labels, cfg.dev_fraction, cfg.seed)
        dev_texts, dev_labels = list(dev_texts), self._as_labels([] if dev_labels is None else dev_labels)
        self.config.label_names = label_names_of(labels, multi)
        set_seed(cfg.seed)
        encoder, self.tokenizer = load_encoder(self.config.encoder)
        check_max_length(self.config.encoder, self.config.max_length, encoder.config)
        self.model = BertLSTMModel(self.config, encoder)
        train, dev = self._labelled(texts, labels, "training data"), self._labelled(dev_texts, dev_labels, "dev data")
        trainer = Trainer(self.model, cfg, class_weights=self._class_weights(self.label_names, train[1]))
        trainer.callbacks.extend(callbacks)
        start = time.perf_counter()
        train_set, dev_set = self._datasets(train, dev, trainer)
        prepare_seconds = time.perf_counter() - start  # tokenizing, and building or reading the feature cache
        self.history = trainer.fit(train_set, dev_set, checkpoint_dir)
        self.model = trainer.base_model
        self.device = trainer.accelerator.device
        dev_logits = predict_logits(self.model, dev_set, cfg.encode_batch_size, self.device)  # (N, C)
        if multi:
            self.config.thresholds = tune_thresholds(np.asarray(dev_set.labels), expit(dev_logits), cfg.threshold)
        best = {k: v for k, v in trainer.best.items() if k == "epoch" or k.startswith("dev_")}
        self.metrics = {
            "best_epoch": best.pop("epoch"),
            **best,
            "metric": trainer.metric,
            "n_train": len(train_set),
            "n_dev": len(dev_set),
            "prepare_seconds": prepare_seconds,
            "dev": self._report(dev_set.labels, dev_logits),
        }
        return self

    def _report(self, targets: list[Any], logits: np.ndarray) -> dict[str, Any]:
        """The full evaluation report from targets and logits (N, C)."""
        if self.config.multi_label:
            return multilabel_report(np.asarray(targets), self._chosen(expit(logits)), self.config.label_names)
        return full_report(targets, logits.argmax(-1).tolist(), self.config.label_names)

    def _as_labels(self, labels: Sequence[Any]) -> list[Any]:
        """Labels as strings (numbers read as numbers), or as lists of strings when multi-label."""
        if self.config.multi_label:
            if any(isinstance(label, str) for label in labels):
                raise BertLSTMError(
                    "with `multi_label`, each label must be a list of names, not a joined string", "multi_label"
                )
            return [[str(name) for name in label] for label in labels]
        return tidy_labels([str(label) for label in labels], "labels")

    def _class_weights(self, names: list[str], targets: list[Any]) -> torch.Tensor | None:
        """Loss weight per class from ``class_weight``: "balanced" (n / (C * count); for multi-label the
        positive weight negatives / positives per label) or explicit numbers, one per class."""
        spec, n_classes = parse_class_weight(self.train_config.class_weight), len(names)
        if spec is None:
            return None
        if spec == "balanced":
            if not len(targets):
                return None
            if self.config.multi_label:
                positives = np.asarray(targets).sum(0).clip(min=1)
                return torch.tensor((len(targets) - positives) / positives, dtype=torch.float32)
            counts = np.bincount(targets, minlength=n_classes).clip(min=1)
            return torch.tensor(len(targets) / (n_classes * counts), dtype=torch.float32)
        if len(spec) != n_classes:
            raise BertLSTMError(
                f"{len(spec)} class weights for {n_classes} classes ({', '.join(names)})", "class_weight"
            )
        return torch.tensor(spec, dtype=torch.float32)

    def _datasets(
        self, train: tuple[list[str], list[int]], dev: tuple[list[str], list[int]], trainer: Trainer
    ) -> tuple[Dataset, Dataset]:
        """Token datasets, or, for a frozen encoder with the cache on, cached-feature datasets."""
        cfg = self.train_config
        if self.model.encoder_frozen and cfg.cache:
            self.model.to(trainer.accelerator.device)
            fingerprint = encoder_fingerprint(self.model, self.tokenizer)
            with trainer.accelerator.main_process_first():
                return (
                    self._cached(*train, "training data", fingerprint, trainer),
                    self._cached(*dev, "dev data", fingerprint, trainer),
                )
        pad_to = self.config.max_length if cfg.pad_to_max_length else None
        return self._encode(*train, pad_to), self._encode(*dev, pad_to)

    def _labelled(self, texts: Sequence[str], labels: Sequence[Any], where: str) -> tuple[list[str], list[Any]]:
        """Texts whose label the model knows and their targets: class ids (texts with a label never seen in
        training are left out, with a warning), or 0/1 rows when multi-label (unseen names are dropped)."""
        if self.config.multi_label:
            return list(texts), encode_label_lists(labels, self.config.label_names, where)
        ids, keep = encode_labels(labels, self.config.label_names, where)
        return [texts[i] for i in keep], ids

    def _encode(self, texts: Sequence[str], ids: list[int] | None = None, pad_to: int | None = None) -> TokenDataset:
        return TokenDataset(tokenize(self.tokenizer, texts, self.config.max_length), ids, self._pad_id, pad_to)

    def _cached(
        self, texts: list[str], ids: list[int], where: str, fingerprint: str, trainer: Trainer
    ) -> FeatureDataset:
        """Encoder features of ``texts`` from the feature cache, computed on a miss."""
        cfg = self.train_config
        key = CacheKey(
            encoder=self.config.encoder,
            encoder_hash=fingerprint,
            layers=self.config.layers,
            max_length=self.config.max_length,
            pooling="mean" if self.config.mode == "pooled" else "tokens",
            dtype=cfg.cache_dtype,
            texts_hash=texts_fingerprint(texts),
            n_texts=len(texts),
        )
        cache = FeatureCache(cfg.cache_dir)
        store = cache.open(key)
        if store is None:
            tokens = self._encode(texts)
            store = cache.build(
                key, self.model, tokens.input_ids, self._pad_id, cfg.encode_batch_size, trainer.accelerator.device
            )
            trainer.log(
                f"feature cache: encoded {len(texts)} {where} texts in {store.meta['build_seconds']:.1f}s"
                f" -> {store.folder}"
            )
        else:
            trainer.log(f"feature cache: read {len(texts)} {where} texts from {store.folder}")
        return FeatureDataset(store, ids)

    @property
    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    # --- using it -----------------------------------------------------------------------------
    def _require_model(self) -> BertLSTMModel:
        if self.model is None:
            raise BertLSTMError("this classifier is not trained yet: call fit() or from_pretrained()")
        return self.model

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (N, C), columns in :attr:`label_names` order (independent sigmoids when
        multi-label, else a softmax)."""
        model = self._require_model()
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        logits = torch.from_numpy(
            predict_logits(model, self._encode(texts), self.train_config.encode_batch_size, self.device)
        )
        return (torch.sigmoid(logits) if self.config.multi_label else torch.softmax(logits, dim=-1)).numpy()

    def decide(self, proba: np.ndarray) -> list[Any]:
        """Labels from probabilities: the most probable name, or when multi-label every name whose
        probability reaches its threshold."""
        names = self.config.label_names
        if self.config.multi_label:
            return [[names[j] for j in np.flatnonzero(row)] for row in self._chosen(proba)]
        return [names[i] for i in proba.argmax(-1)]

    def _chosen(self, proba: np.ndarray) -> np.ndarray:
        """Multi-label decisions (N, C): each probability against its label's tuned threshold (0.5 untuned)."""
        return proba >= np.asarray(self.config.thresholds or [0.5] * self.config.num_labels)

    def predict(self, texts: Sequence[str]) -> list[Any]:
        """The label name per text (a list of names when multi-label)."""
        return self.decide(self.predict_proba(texts))

    def evaluate(self, texts: Sequence[str], labels: Sequence[Any]) -> dict[str, Any]:
        """Accuracy, macro/weighted P/R/F1, per-class report and confusion matrix; when multi-label, micro
        and macro P/R/F1 and a per-label report, at the tuned thresholds.

        Rows whose label the model never saw in training are left out, with a warning.
        """
        labels = self._as_labels(labels)
        known, y_true = self._labelled(texts, labels, "evaluation data")
        model = self._require_model()
        logits = predict_logits(model, self._encode(known), self.train_config.encode_batch_size, self.device)
        return {**self._report(y_true, logits), "n_unseen_label": len(labels) - len(known)}

    # --- folders ------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a self-contained model folder, atomically: a temporary folder renamed into place.

        An existing ``directory`` is replaced only when it is empty or a bertlstm model folder, unless
        ``overwrite``; the working folder and its parents never are.
        """
        model = self._require_model()
        target = check_output(directory, overwrite=overwrite)
        _check_finite(model)
        with atomic_folder(target) as tmp:
            self._write_folder(model, tmp)
        return target

    def _write_folder(self, model: BertLSTMModel, folder: Path) -> None:
        head = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
        save_file(head, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        model.encoder.save_pretrained(folder / ENCODER_DIR)
        self.tokenizer.save_pretrained(folder / ENCODER_DIR)
        meta = {
            "format_version": FORMAT_VERSION,
            "library_versions": {p: version(p) for p in ("bertlstm", "torch", "transformers", "safetensors")},
            "model": self.config.to_dict(),
            "training": self.train_config.to_dict(),
            "tokenizer_size": len(self.tokenizer),
            "files": digests(folder),  # SHA-256 of every weight and tokenizer file, verified on load
        }
        (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if self.history:
            with open(folder / "history.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.history[0]))
                writer.writeheader()
                writer.writerows(self.history)
        if self.metrics:
            (folder / "metrics.json").write_text(json.dumps(self.metrics, indent=2) + "\n")
        if self.history:
            write_plots(folder, self.history, self.metrics.get("test") or self.metrics.get("dev"))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str = "auto") -> BertLSTMClassifier:
        """Load a folder written by :meth:`save_pretrained`: local files only, every checksum verified,
        safetensors only, no code from the folder ever run."""
        folder = Path(directory)
        meta = read_config(folder)
        check_files(folder, meta)
        clf = cls._from_config(meta, device, folder / CONFIG_NAME)
        target = resolve_device(device)
        encoder, clf.tokenizer = load_saved_encoder(folder / ENCODER_DIR)
        if "tokenizer_size" in meta and len(clf.tokenizer) != meta["tokenizer_size"]:
            raise BertLSTMError(
                f"{folder / ENCODER_DIR}: the tokenizer has {len(clf.tokenizer)} entries, but the model was saved "
                f"with {meta['tokenizer_size']}: it is not the tokenizer this model was trained with"
            )
        if len(clf.tokenizer) > encoder.config.vocab_size:
            raise BertLSTMError(f"{folder / ENCODER_DIR}: the tokenizer is larger than the encoder's vocabulary")
        model = BertLSTMModel(clf.config, encoder)
        try:
            missing, unexpected = model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=False)
        except Exception as err:  # a torn file (SafetensorError) or tensors of other shapes (RuntimeError)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BertLSTMError(f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}: {first}") from None
        if unexpected or any(not k.startswith("encoder.") for k in missing):
            raise BertLSTMError(f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}")
        clf.device = target
        clf.model = model.to(target).eval()
        metrics_file = folder / "metrics.json"
        clf.metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        return clf

    @classmethod
    def _from_config(cls, meta: dict[str, Any], device: str, where: Path) -> BertLSTMClassifier:
        """A classifier with the saved settings; settings this version does not know are an error."""
        model_opts = dict(meta["model"])
        unknown = set(model_opts) - {f.name for f in dataclasses.fields(ModelConfig)}
        if unknown:
            raise BertLSTMError(f"{where}: unknown model setting(s) {', '.join(sorted(unknown))}")
        _, train_opts = _split_kwargs(meta.get("training", {}), strict=False)  # not needed to predict: extras ignored
        try:
            return cls(**model_opts, **{**train_opts, "device": device})
        except (TypeError, ValueError) as err:
            raise BertLSTMError(f"{where}: {err}") from None


def _check_finite(model: BertLSTMModel) -> None:
    """Never save a model that would predict NaN."""
    state = model.state_dict()
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        raise BertLSTMError(f"the model has non-finite weights ({', '.join(bad[:3])}); it was not saved")
