"""The PyTorch engine: a model in memory, optionally with int8 linear and LSTM layers, run by name on a
batch's arrays (see :mod:`bertlstm.core.backends`)."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor, nn

from .backends import Engine
from .errors import BertLSTMError
from .inference import as_tensors
from .modeling import quantize_int8


class TorchEngine(Engine):
    """``model(**batch)`` under ``inference_mode``: its ``logits`` (a tagger's emissions are its logits), or the
    tensor a module returns; with ``quantize="int8"``, a copy of the model with int8 weights (CPU only)."""

    kind = "torch"

    def __init__(self, model: nn.Module, device: torch.device, quantize: str | None = None) -> None:
        if quantize not in (None, "int8"):
            raise BertLSTMError(f"`quantize` must be int8 or nothing, not {quantize!r}", "quantize")
        self.model = quantize_int8(model, device) if quantize else model
        self.device, self.quantized, self.on_cpu = device, quantize, device.type == "cpu"

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        # torch warns at every quantized pass that torch.ao is moving to torchao
        quiet = warnings.catch_warnings() if self.quantized else nullcontext()
        with torch.inference_mode(), quiet:
            if self.quantized:
                warnings.simplefilter("ignore")
            out = self.model(**as_tensors(inputs, self.device))
        self.model.train(was_training)
        return (out if isinstance(out, Tensor) else out.logits).float().cpu().numpy()
