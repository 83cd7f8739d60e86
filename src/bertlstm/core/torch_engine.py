"""The PyTorch engine: a model in memory, optionally with int8 linear and LSTM layers or under bf16 autocast,
run by name on a batch's arrays (see :mod:`bertlstm.core.backends`)."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor, nn

from .backends import Engine
from .errors import BertLSTMError
from .inference import as_tensors
from .modeling import native_bf16, quantize_int8


def require_bf16(device: torch.device) -> None:
    """Refuse bf16 where ``device`` does not compute in it natively."""
    if not native_bf16(device):
        raise BertLSTMError(
            f"`precision` bf16 needs hardware that computes in bf16 (a CPU with AVX512-BF16 or AMX, or a GPU); "
            f"this {device.type} has none, and emulated bf16 is slower than fp32: use fp32 or int8",
            "precision",
        )


class TorchEngine(Engine):
    """``model(**batch)`` under ``inference_mode``: its ``logits`` (a tagger's emissions are its logits), or the
    tensor a module returns. ``precision`` int8: a copy of the model with int8 weights (CPU only); bf16: under
    bf16 autocast, where ``device`` computes in bf16 natively (refused elsewhere: emulated, it is slower)."""

    kind = "torch"

    def __init__(self, model: nn.Module, device: torch.device, precision: str | None = None) -> None:
        precision = precision or "fp32"
        if precision not in ("fp32", "int8", "bf16"):
            raise BertLSTMError(f"`precision` must be fp32, int8 or bf16, not {precision!r}", "precision")
        if precision == "bf16":
            require_bf16(device)
        self.model = quantize_int8(model, device) if precision == "int8" else model
        self.device, self.precision, self.on_cpu = device, precision, device.type == "cpu"

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        # torch warns at every quantized pass that torch.ao is moving to torchao
        quiet = warnings.catch_warnings() if self.quantized else nullcontext()
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), quiet, bf16:
            if self.quantized:
                warnings.simplefilter("ignore")
            out = self.model(**as_tensors(inputs, self.device))
        self.model.train(was_training)
        return (out if isinstance(out, Tensor) else out.logits).float().cpu().numpy()
