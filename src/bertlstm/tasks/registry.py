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
from pathlib import Path
from typing import Any

from ..core.backends import read_export_metadata
from ..core.errors import BertLSTMError
from ..core.hub import local_folder
from ..core.model_folder import read_config
from ..core.task import ModelRef, Task
from .classify import TASK as CLASSIFICATION
from .document import TASK as DOCUMENTS
from .student import TASK as STUDENT
from .tag import TASK as TAGGING

logger = logging.getLogger(__name__)
TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, TAGGING, DOCUMENTS, STUDENT)}
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
