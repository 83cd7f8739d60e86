"""The estimator base: what the classifier and the tagger share, in the spirit of skorch's ``NeuralNet``.

* Every setting of the task's model settings and of :class:`~bertlstm.core.config.TrainConfig` is a keyword
  argument, stored unchanged, and spelled out in ``__init__``'s signature (generated for each subclass), so
  that scikit-learn's ``get_params``, ``set_params`` and ``clone`` work; the settings are checked when
  :meth:`Estimator.fit` starts.
* :meth:`Estimator.fit` is the skeleton: learn the labels, build the model, make the datasets (through the
  feature cache when the encoder is frozen), train with the shared :class:`~bertlstm.core.training.Trainer`,
  keep the best epoch, record the metrics.
* :meth:`Estimator.save_pretrained` / :meth:`Estimator.from_pretrained` write and read a model folder (locally
  or on the Hugging Face Hub); :meth:`Estimator.push_to_hub` uploads one.
* Prediction runs through a back end: :meth:`Estimator.predictor` puts the trained model behind the PyTorch
  engine and the task's :class:`~bertlstm.core.backends.Predictor`, the same code an exported graph runs.

A task's estimator subclasses it and fills in what differs: its settings, labels, model, datasets, metrics and
predictor (the methods below that raise ``NotImplementedError``).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .backends import Predictor, plain_tokenizer
from .callbacks import Checkpoint, EarlyStopping, KeepBest, LogEpoch
from .config import TaskSettings, TrainConfig
from .device import resolve_device
from .encoder_names import check_layers, check_max_length
from .encoders import EncoderSource, notes_folder, open_encoder
from .errors import BertLSTMError
from .export_graph import ExportGraph
from .feature_cache import FeatureCache, FeatureStore, machine_pass, model_features
from .folders import check_output
from .hub import local_folder, push_folder
from .inference import Predict, as_tensors, predict_logits
from .model_card import CardInfo, model_card
from .model_folder import (
    ENCODER_DIR,
    FORMAT_VERSION,
    RECORDS,
    SavedModel,
    load_model_folder,
    load_trained,
    save_trained,
)
from .modeling import EncoderModel
from .torch_engine import TorchEngine

logger = logging.getLogger(__name__)


class NotTrainedError(BertLSTMError, NotFittedError):
    """Predicting before ``fit`` or ``from_pretrained``: a BertLSTMError, and scikit-learn's NotFittedError."""


class Estimator(BaseEstimator):
    """A BERT-family encoder feeding an LSTM, as a scikit-learn estimator (see the module's docstring).

    After fitting or loading: ``model_``, ``tokenizer_``, ``training_`` (the settings it was trained with),
    ``history_``, ``metrics_``, ``device_`` and ``predictor_``, and the task's labels.
    """

    task: ClassVar[str]  # the name config.json records
    noun: ClassVar[str]  # "classifier", "tagger": in messages
    config_class: ClassVar[type[TaskSettings]]
    predictor_class: ClassVar[type[Predictor]]
    card: ClassVar[CardInfo]
    settings: ClassVar[dict[str, dataclasses.Field]] = {}

    predictor_: Predictor  # this model behind the PyTorch engine: what predict and evaluate run through
    model_: Any  # the task's model: an EncoderModel (a student's has no encoder)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each task's ``__init__`` spells out its settings: scikit-learn reads them from the signature."""
        super().__init_subclass__(**kwargs)
        if "config_class" not in cls.__dict__:
            return
        cls.settings = {f.name: f for f in (*dataclasses.fields(cls.config_class), *dataclasses.fields(TrainConfig))}

        def __init__(self: Estimator, **settings: Any) -> None:
            Estimator.__init__(self, **settings)

        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [inspect.Parameter(n, keyword, default=f.default) for n, f in cls.settings.items()]
        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        __init__.__signature__ = inspect.Signature([self_param, *params])  # type: ignore[attr-defined]
        __init__.__doc__ = f"Every field of {cls.config_class.__name__} and TrainConfig, as a keyword argument."
        cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(self.settings))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s): {', '.join(unknown)}")
        for name, field in self.settings.items():
            setattr(self, name, settings.get(name, field.default))

    @property
    def config(self) -> Any:
        """The model settings as given now (checked)."""
        return self.config_class.from_dict({n: getattr(self, n) for n in self.config_class.field_names()})

    @property
    def train_config(self) -> TrainConfig:
        """The training settings as given now (checked)."""
        return TrainConfig.from_dict({n: getattr(self, n) for n in TrainConfig.field_names()})

    def _configs(self) -> tuple[Any, TrainConfig]:
        config, training = self.config, self.train_config
        config.check_training(training)
        return config, training

    # --- training -----------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        dev_X: Any = None,
        dev_y: Any = None,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Any] = (),
        **options: Any,
    ) -> Any:
        """Train on ``X`` and ``y`` (the task says their forms), checking on the dev set ``dev_X``/``dev_y``,
        or without one on ``dev_fraction`` of the data held out. With ``checkpoint_dir``, a checkpoint is
        written there after each epoch, and one already there is resumed from. ``callbacks`` are
        :class:`~bertlstm.core.callbacks.Callback` objects or functions of each epoch's history row."""
        config, training = self._configs()
        train, dev = self._learn(X, y, dev_X, dev_y, config, training, **options)
        self._build_model(config, training)
        metric = self._metric(training)
        best = KeepBest(metric)
        trainer = self._trainer(metric, train, [LogEpoch(), best, *callbacks], checkpoint_dir)
        start = time.perf_counter()
        train_set, dev_set = self._dataset(train, "training", trainer), self._dataset(dev, "dev", trainer)
        prepare_seconds = time.perf_counter() - start  # tokenizing, and building or reading the feature cache
        self.history_ = trainer.fit(train_set, dev_set)
        self.device_ = trainer.accelerator.device
        self.model_.eval()  # ready to use, as after from_pretrained
        outputs = best.outputs if best.outputs is not None else trainer.eval_step(dev_set)  # the best epoch's
        dev_report = self._after_fit(dev, dev_set, outputs)
        self.metrics_ = {
            "best_epoch": best.best["epoch"],
            **{k: v for k, v in best.best.items() if k.startswith("dev_")},
            "metric": metric,
            "n_train": len(train_set),
            "n_dev": len(dev_set),
            **self._fit_notes(),
            "prepare_seconds": prepare_seconds,
            "dev": dev_report,
        }
        self.predictor_ = self.predictor()
        return self

    def cache_features(self, X: Any, y: Any = None, dev_X: Any = None, dev_y: Any = None, **options: Any) -> Any:
        """Build the feature cache entries that ``fit`` with the same arguments and settings reads (for a frozen
        or partly fine-tuned encoder with the cache on), without training: a search builds them once before its
        processes share them. The estimator stays unfitted."""
        config, training = self._configs()
        train, dev = self._learn(X, y, dev_X, dev_y, config, training, **options)
        self._build_model(config, training)
        try:
            trainer = self._trainer(self._metric(training), train, [], None)
            self._dataset(train, "training", trainer)
            self._dataset(dev, "dev", trainer)
        finally:
            self.model_ = None
        return self

    def _build_model(self, config: Any, training: TrainConfig) -> None:
        from accelerate.utils import set_seed  # only to train: loading a model for prediction never imports it

        set_seed(training.seed)
        # A frozen encoder may never run: its features may all be cached (see core.encoders).
        notes = (
            notes_folder(FeatureCache(training.cache_dir).root)
            if config.mode != "finetune" and training.cache
            else None
        )
        encoder, self.tokenizer_ = open_encoder(config.encoder, notes)
        check_max_length(config.encoder, config.max_length, encoder.config)
        check_layers(config.encoder, config.layers, getattr(encoder.config, "num_hidden_layers", None))
        self.model_ = self._new_model(config, encoder)
        # the settings this model was trained with (encoder_lr auto resolved), whatever set_params does later
        self.training_ = training.resolved(encoder.config.hidden_size)
        if self.model_.cacheable and training.cache and training.feature_pass == "auto":
            way, why = machine_pass("auto", resolve_device(training.device))
            self.training_ = dataclasses.replace(self.training_, feature_pass=way)  # recorded as chosen
            logger.info(f"feature pass {way} ({why})")
        if config.mode == "finetune" and training.encoder_lr == "auto":
            layers, width = encoder.config.num_hidden_layers, encoder.config.hidden_size
            logger.info(f"encoder lr {self.training_.encoder_lr:g} (auto, for a {layers}-layer, {width}-wide encoder)")
        self.metrics_ = {}

    def _trainer(self, metric: str, train: Any, callbacks: list[Any], checkpoint_dir: Any) -> Any:
        """A Trainer over the model; checkpoints and early stopping after ``callbacks``."""
        from .training import Trainer  # only when training: prediction never imports the training loop

        if checkpoint_dir is not None:
            callbacks.append(Checkpoint(checkpoint_dir, self.training_.checkpoint_minutes))
        if self.training_.patience:
            callbacks.append(EarlyStopping(metric, self.training_.patience))
        weight = self._loss_weight(train)
        return Trainer(
            self.model_, self.training_, self._score, callbacks, loss_weight=weight, predict=self._dev_outputs()
        )

    def _cached(self, keys: Sequence[str], input_ids: Any, what: str, trainer: Any) -> FeatureStore | None:
        """For a frozen (or partly fine-tuned) encoder with the cache on, while training: the features of
        ``keys`` (or the frozen layers' states), from the feature cache, built by the run's processes together
        on a miss (``input_ids()`` are then encoded). None otherwise: the dataset holds word-piece ids."""
        model = self._require_model()
        if trainer is None or not (model.cacheable and self.training_.cache):
            return None
        device = trainer.accelerator.device
        model.to(device)
        return model_features(model, self.tokenizer_, keys, input_ids, self.training_, device, what, trainer.shard)

    # --- what a task fills in -------------------------------------------------------------------
    def _learn(self, *args: Any, **options: Any) -> tuple[Any, Any]:
        """From ``X, y, dev_X, dev_y, config, training`` and the task's own ``fit`` keywords: the labels (set on
        ``self``), and the training and dev examples."""
        raise NotImplementedError

    def _new_model(self, config: Any, encoder: Any) -> EncoderModel:
        raise NotImplementedError

    def _dataset(self, examples: Any, what: str, trainer: Any = None) -> Any:
        """A dataset of ``examples`` with their targets (``lengths``, items, ``collate``)."""
        raise NotImplementedError

    def _dev_outputs(self) -> Predict:
        """What each epoch scores on dev: logits (or, for a tagger, decoded tags) over a dataset."""
        return predict_logits

    def _metric(self, training: TrainConfig) -> str:
        """The dev metric that picks the best epoch."""
        raise NotImplementedError

    def _score(self, outputs: np.ndarray, dataset: Any) -> dict[str, float]:
        """What each epoch reports on dev, from ``dev_outputs``."""
        raise NotImplementedError

    def _loss_weight(self, train: Any) -> torch.Tensor | None:
        return None

    def _after_fit(self, dev: Any, dev_set: Any, outputs: np.ndarray) -> dict[str, Any]:
        """After training, with the dev data (as ``_learn`` gave it), its dataset and the best epoch's outputs:
        anything tuned on dev; the full dev report."""
        raise NotImplementedError

    def _fit_notes(self) -> dict[str, Any]:
        """What a task adds to ``metrics_``."""
        return {}

    def _labels_section(self) -> dict[str, Any]:
        """What config.json's ``labels`` section holds."""
        raise NotImplementedError

    def _restore_labels(self, section: dict[str, Any], where: str) -> None:
        raise NotImplementedError

    # --- using it -----------------------------------------------------------------------------
    def _require_model(self) -> Any:
        if getattr(self, "model_", None) is None:
            raise NotTrainedError(f"this {self.noun} is not trained yet: call fit() or from_pretrained()")
        return self.model_

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id (0 when it has none)."""
        return self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else 0

    def describe(self) -> dict[str, Any]:
        """The trained model as an export's metadata describes it: what a predictor needs besides the graph."""
        model, tokenizer = self._require_model(), self.tokenizer_
        return {
            "task": self.task,
            "format_version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "labels": self._labels_section(),
            "pad_token_id": self.pad_id,
            "special_token_ids": {
                "cls": tokenizer.cls_token_id,
                "sep": tokenizer.sep_token_id,
                "unk": tokenizer.unk_token_id,
            },
        }

    def export_graph(self) -> ExportGraph:
        """The model as one ONNX-exportable graph (the task's)."""
        raise NotImplementedError

    def export_graphs(self) -> list[ExportGraph]:
        """The graphs an export writes, the first as ``NAME.onnx``, each with how to check it: batches from raw
        texts through this model's predictor, and the model's own output for them."""
        graph, predictor, model = self.export_graph(), self.predictor(), self._require_model()
        graph.sample = predictor.batch_of
        graph.reference = lambda batch: model(**as_tensors(batch)).logits.detach().numpy()
        return [graph]

    def predictor(self, precision: str | None = None, batch_size: int | None = None) -> Predictor:
        """This trained model behind the PyTorch engine (``precision`` int8: a copy with int8 weights; bf16: under
        bf16 autocast, where the device has it), with ``batch_size`` texts per forward pass (default: 32 on a
        CPU)."""
        engine = TorchEngine(self._require_model(), self.device_, precision)
        meta = self.describe()
        tokenizer = plain_tokenizer(self.tokenizer_, self.predictor_class.truncation(meta))
        return self.predictor_class(engine, meta, tokenizer, batch_size)

    # --- folders ------------------------------------------------------------------------------
    def save_pretrained(
        self, directory: str | os.PathLike, overwrite: bool = False, repo_id: str | None = None
    ) -> Path:
        """Write a self-contained model folder, with a Hub model card, atomically (a temporary folder
        renamed into place). ``repo_id`` names the model in its card (``push_to_hub`` gives it).

        An existing ``directory`` is replaced only when it is empty or a bertlstm model folder (another kind of
        bertlstm output with ``overwrite``); never one that holds anything bertlstm did not write, a protected
        folder (home, caches, environments, git work trees), the working folder or its parents, nor what the
        model was made from (a student's teacher).
        """
        self._require_model()
        return self.write_folder(check_output(directory, overwrite=overwrite, inputs=self._made_from()), repo_id)

    def _made_from(self) -> list[Path]:
        """Local files a saved model must never replace: those it was made from, where they are not part of
        its own folder (a student's teacher)."""
        return []

    def write_folder(self, path: Path, repo_id: str | None = None) -> Path:
        """:meth:`save_pretrained` to a ``path`` its caller has already checked (and locked): a training run."""
        model = self._require_model()
        sections = {
            "task": self.task,
            "model": model.config.to_dict(),
            "labels": self._labels_section(),
            "training": self.training_.to_dict(),
            # what the tokenizer's special tokens are: an exported graph reads them from here
            "special_token_ids": {"pad": self.pad_id, **self.describe()["special_token_ids"]},
        }
        history, metrics = getattr(self, "history_", []), getattr(self, "metrics_", {})
        if repo_id is not None:  # a Hub upload keeps no training texts: the dev examples stay on this machine
            metrics = {k: _without_texts(v) for k, v in metrics.items()}
        records: dict[str, Any] = {"README.md": model_card(repo_id, sections, metrics, history, self.card)}
        records.update(history=history, metrics=metrics)
        return save_trained(path, sections, model, self.tokenizer_, records)

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None) -> str:
        """Save to a temporary folder and upload it to the Hugging Face Hub as ``repo_id``; returns its URL."""
        return push_folder(lambda folder: self.save_pretrained(folder, repo_id=repo_id), repo_id, private, token)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "auto") -> Any:
        """Load a folder written by :meth:`save_pretrained` (its exact inverse), or a Hub repository
        (``user/name``, downloaded to the Hugging Face cache): every checksum verified, safetensors only, no
        code from the folder ever run."""
        return cls.from_saved(load_model_folder(local_folder(name_or_path), RECORDS), device)

    @classmethod
    def from_saved(cls, saved: SavedModel, device: str = "auto") -> Any:
        """The estimator of a model folder already read and verified (:func:`load_model_folder`)."""
        where = f"{saved.folder / 'config.json'}: "
        task = saved.meta.get("task", "classification")
        if task != cls.task:
            raise BertLSTMError(f"{where}a {task} model, not a {cls.task} model ({cls.__name__})")
        config: Any = cls.config_class.from_dict(saved.meta["model"], where + "model: ")
        training = TrainConfig.from_dict(saved.meta.get("training", {}), where + "training: ")
        config.check_training(training)
        try:  # a max_length past the encoder's positions would crash on the first long text
            check_max_length(config.encoder, config.max_length, saved.encoder.config)
        except BertLSTMError as err:
            raise BertLSTMError(f"{where}model: {err}") from None
        estimator = cls(**config.as_kwargs(), **training.as_kwargs())
        estimator._restore_labels(saved.meta["labels"], where + "labels")
        estimator.training_, estimator.tokenizer_ = training, saved.tokenizer
        estimator.device_ = resolve_device(device)
        model = estimator._new_model(config, _folder_encoder(saved))
        estimator.history_, estimator.metrics_ = load_trained(model, saved)
        estimator.model_ = model.to(estimator.device_).eval()
        estimator.predictor_ = estimator.predictor()
        return estimator


def _folder_encoder(saved: SavedModel) -> EncoderSource:
    """A model folder's encoder, with its files as config.json records them (verified on load): saving the model
    again copies them, if it stays unchanged."""
    files = saved.meta.get("files")
    prefix = f"{ENCODER_DIR}/"
    mine = {n.removeprefix(prefix): d for n, d in files.items() if n.startswith(prefix)} if files else None
    return EncoderSource(saved.folder / ENCODER_DIR, mine, saved.encoder)


def _without_texts(report: Any) -> Any:
    """A metrics entry without the dev texts a report quotes (``confident_errors``)."""
    return {k: v for k, v in report.items() if k != "confident_errors"} if isinstance(report, dict) else report
