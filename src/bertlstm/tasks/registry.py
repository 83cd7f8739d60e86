"""The task registry: the one place that lists the tasks, and the one place a model is looked up by task.

``TASKS`` maps the task name that ``config.json`` (or an export's metadata) records to what the task supplies
(:class:`~bertlstm.core.task.Task`). :func:`find_model` reads a model's metadata once and finds its task;
:meth:`ModelRef.estimator` and :meth:`ModelRef.predictor` hand the model to that task's estimator or predictor.
No other module branches on the task: a new task is a new folder beside ``classify`` and ``tag``, and one line
here.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.backends import Predictor, read_export_metadata
from ..core.errors import BertLSTMError
from ..core.hub import local_folder
from ..core.model_folder import RECORDS, load_model_folder, read_config
from ..core.task import Task
from .classify import TASK as CLASSIFICATION
from .document import TASK as DOCUMENTS
from .tag import TASK as TAGGING

logger = logging.getLogger(__name__)
TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, TAGGING, DOCUMENTS)}
DEFAULT_TASK = CLASSIFICATION.name  # what a model folder without a "task" holds (written before tagging)


def get_task(name: str | None, where: str = "", model: dict[str, Any] | None = None) -> Task:
    """The task named ``name`` (or one of its aliases; None: classification), or the task that refines it and
    claims the ``model`` settings given (classification with ``long_text`` chunks: documents)."""
    found = _named(name or DEFAULT_TASK, where)
    for task in TASKS.values():
        if task.refines == found.name and task.claims is not None and task.claims(model or {}):
            return task
    return found


def _named(name: str, where: str) -> Task:
    for task in TASKS.values():
        if name == task.name or name in task.aliases:
            return task
    known = ", ".join(n for task in TASKS.values() for n in (task.name, *task.aliases))
    raise BertLSTMError(f"{where}`task` must be one of {known}, not {name!r}", "task")


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

    def predictor(self, quantize: str | None = None, device: str = "auto", batch_size: int | None = None) -> Predictor:
        """The model ready to predict: a folder through PyTorch (``quantize`` int8: int8 weights), an export
        through onnxruntime; ``batch_size`` texts per forward pass (default: 32 on a CPU)."""
        if self.backend == "onnx":
            if quantize:
                raise BertLSTMError("an ONNX graph is quantized when it is exported, not when it is loaded", "quantize")
            logger.info(f"loading the exported {self.task.name} model {self.path} ...")
            return self.task.predictor().from_export(self.path, self.meta, batch_size)
        return self.estimator(device).predictor(quantize, batch_size)


def find_model(model: str | os.PathLike, backend: str = "auto") -> ModelRef:
    """A model folder, a Hub repository (``user/name``, downloaded to the Hugging Face cache) or an exported
    ``.onnx`` file, its metadata read and its task found; ``backend`` auto tells folders and exports apart."""
    is_onnx = Path(model).suffix == ".onnx"
    backend = ("onnx" if is_onnx else "torch") if backend == "auto" else backend
    if backend not in ("torch", "onnx"):
        raise BertLSTMError(f"`backend` must be auto, torch or onnx, not {backend!r}", "backend")
    if backend == "onnx":
        if not is_onnx:
            raise BertLSTMError(f"the onnx back end runs an exported .onnx file: export {model} first", "backend")
        meta = read_export_metadata(Path(model))
        return ModelRef(Path(model), get_task(meta.get("task"), f"{Path(model).with_suffix('.json')}: "), meta, backend)
    if is_onnx:
        raise BertLSTMError(f"{model} is an ONNX graph: use the onnx back end", "backend")
    folder = local_folder(model)
    meta = read_config(folder)
    return ModelRef(folder, get_task(meta.get("task"), f"{folder / 'config.json'}: "), meta, backend)


def load_estimator(model: str | os.PathLike, device: str = "auto") -> Any:
    """The estimator of a model folder or Hub repository, whatever its task."""
    return find_model(model, "torch").estimator(device)
