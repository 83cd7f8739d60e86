"""Which engine runs a model for ``predict``, ``evaluate`` and ``serve``, and the one entry point that opens a
model folder, a Hub id or an export for Python users (:func:`open_model`): the choice itself, and the cache of
graphs it runs folders through, are :mod:`bertlstm.core.graph_cache`'s."""

from __future__ import annotations

import os

from ..core.backends import Predictor
from ..core.graph_cache import open_predictor
from ..core.task import ModelRef
from ..tasks.registry import find_model


def find(model: str, backend: str) -> ModelRef:
    """The model (:func:`~bertlstm.tasks.registry.find_model`); with ``backend`` onnx a model folder too (it
    runs through its cached graph)."""
    return find_model(model, "auto" if backend == "onnx" else backend)


def open_model(
    model: str | os.PathLike,
    backend: str = "auto",
    quantize: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "fp32",
) -> Predictor:
    """A model folder, a Hub id (``user/name``) or an export (``NAME.onnx``), ready to predict on the engine
    :mod:`bertlstm.core.graph_cache` chooses: what ``bertlstm predict``, ``evaluate`` and ``serve`` open. Its
    ``answer(texts)`` gives what the server answers; a classifier's ``predict_proba(texts)`` its probabilities,
    ``labels`` their names. ``precision``: fp32 (exact), int8, bf16 where the hardware has it, or auto (see
    :mod:`bertlstm.core.graph_cache`).

    Example:
        >>> model = bertlstm.open_model("my-model")
        >>> model.answer(["The striker scored twice"])
    """
    return open_predictor(find(str(model), backend), backend, quantize, device, batch_size, precision=precision)
