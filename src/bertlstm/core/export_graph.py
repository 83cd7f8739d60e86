"""What a task gives the ONNX exporter (:mod:`bertlstm.deploy.export`): the module to export, its inputs and
output by name, which axes vary, and which output positions are real (padding positions are unspecified)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn


@dataclass
class ExportGraph:
    """A trained model as an exportable graph."""

    module: nn.Module  # takes the inputs in ``inputs`` order (int64 tensors), returns the output
    inputs: tuple[str, ...]  # the names of its inputs, as a predictor's batches name them
    output: str  # the name of its output: logits, emissions
    output_axes: tuple[str, ...]  # what its output's axes are: (batch, labels), (sentences, words, tags)
    dynamic: dict[str, dict[int, str]]  # per input: axis -> the name of its size (batch, sequence, words, ...)
    real: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None  # output positions that are not padding
