"""What a task supplies to the shared machinery: the registry (:mod:`bertlstm.tasks.registry`) maps the task
name that ``config.json`` records to one :class:`Task`, and ``train``, ``predict``, ``evaluate``, ``export``,
``serve`` and ``report`` look it up once.

A task is light to import: its settings classes. Its data reader, estimator and predictor (pandas, PyTorch,
transformers) are loaded on demand, by the functions it gives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import Predictor
from .config import DataConfig, TaskSettings, TrainConfig
from .errors import BertLSTMError
from .model_folder import RECORDS, load_model_folder

if TYPE_CHECKING:
    from .estimator import Estimator

logger = logging.getLogger(__name__)

Data = tuple[Any, Any]  # what an estimator's fit takes: examples and their labels (None where they hold them)


@dataclass
class RunData:
    """A training run's data files, read and checked before any model is built."""

    train: Data
    dev: Data | None = None
    test: Data | None = None
    fit_options: dict[str, Any] = field(default_factory=dict)  # keywords for the estimator's fit


@dataclass(frozen=True)
class Task:
    """One kind of model: its settings, data, reports, and (loaded on demand) its estimator and predictor."""

    name: str  # what config.json's "task" says, and the `task` setting of a run
    aliases: tuple[str, ...]  # other spellings of `task` (classify, tag)
    summary: str  # one line, for help texts
    config: type[TaskSettings]  # the model settings
    data: type[DataConfig]  # the data files and how to read them
    check_file: Callable[[str, Any, bool], None]  # (file, data settings, labelled): its columns, from its head
    output_kind: Callable[[str | None, str | None], str]  # (output file or None, input file): the output format
    read_run_data: Callable[[Any, Any, TrainConfig], RunData]  # (data, model settings, training) -> checked data
    estimator: Callable[[], type[Estimator]]  # the estimator class (imports torch)
    predictor: Callable[[], type[Predictor]]  # the predictor class (imports no torch)
    refines: str | None = None  # another task whose settings select this one (documents: classification)
    claims: Callable[[dict[str, Any]], bool] | None = None  # refines: whether the model settings given select it


@dataclass(frozen=True)
class ModelRef:
    """A trained model found and its metadata read (config.json, or an export's NAME.json); nothing loaded."""

    path: Path  # a local model folder, or an exported .onnx file
    task: Task
    meta: dict[str, Any]
    backend: str  # "torch" (a model folder) or "onnx" (an export)

    def files(self) -> list[Path]:
        """What using the model reads: its folder, or an export's graph, metadata and tokenizer."""
        if self.backend == "torch":
            return [self.path]
        return [self.path, self.path.with_suffix(".json"), self.path.with_name(str(self.meta.get("tokenizer")))]

    def reading(self, given: dict[str, Any] | None = None) -> Any:
        """The task's data settings (how its files are read) from ``given``; a setting that only another task
        has is an error, not silently ignored."""
        given = dict(given or {})
        foreign = sorted(set(given) - set(self.task.data.reading_fields()))
        if foreign:
            raise BertLSTMError(f"`{foreign[0]}` is not a setting of a {self.task.name} model's data", foreign[0])
        return self.task.data.from_dict(given)

    def estimator(self, device: str = "auto") -> Any:
        """The model folder's estimator, every file verified."""
        if self.backend != "torch":
            raise BertLSTMError(f"{self.path} is an exported graph; this needs the model folder it came from")
        start = time.perf_counter()
        logger.info(f"loading the {self.task.name} model {self.path} ...")
        saved = load_model_folder(self.path, RECORDS, self.meta)
        estimator = self.task.estimator().from_saved(saved, device)
        logger.debug(f"loaded {self.path} in {time.perf_counter() - start:.1f}s")
        return estimator

    def predictor(self, precision: str | None = None, device: str = "auto", batch_size: int | None = None) -> Predictor:
        """The model ready to predict: a folder through PyTorch (``precision`` int8: int8 weights; bf16: under
        bf16 autocast), an export through onnxruntime in the precision it was exported in; ``batch_size`` texts
        per forward pass (default: 32 on a CPU)."""
        if self.backend == "onnx":
            logger.info(f"loading the exported {self.task.name} model {self.path} ...")
            return self.task.predictor().from_export(self.path, self.meta, batch_size)
        return self.estimator(device).predictor(precision, batch_size)
