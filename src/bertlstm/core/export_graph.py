"""What a task gives the ONNX exporter (:mod:`bertlstm.deploy.export`): the module to export, its inputs and
output by name, which axes vary, which output positions are real (padding positions are unspecified), and how
to check it: a sample batch from raw texts, and what the PyTorch model gives for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

Batch = dict[str, np.ndarray]


@dataclass
class ExportGraph:
    """A trained model, or one half of it, as an exportable graph."""

    module: nn.Module  # takes the inputs in ``inputs`` order (tensors), returns the output
    inputs: tuple[str, ...]  # the names of its inputs, as a predictor's batches name them
    output: str  # the name of its output: logits, emissions, vectors
    output_axes: tuple[str, ...]  # what its output's axes are: (batch, labels), (sentences, words, tags)
    dynamic: dict[str, dict[int, str]]  # per input: axis -> the name of its size (batch, sequence, words, ...)
    real: Callable[[Batch], np.ndarray] | None = None  # output positions that are not padding
    name: str = "main"  # how the export's metadata names it
    file: str = ""  # added to NAME: "" writes NAME.onnx, ".windows" NAME.windows.onnx
    sample: Callable[[Sequence[str]], Batch] | None = None  # raw texts as a batch of its inputs
    reference: Callable[[Batch], np.ndarray] | None = None  # what the PyTorch model gives for a batch
