"""The one place a device name becomes a ``torch.device``: ``auto`` picks the best available, and a device
that is not there is a clear error, never a raw torch failure later on."""

from __future__ import annotations

import torch

from .errors import BertLSTMError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise BertLSTMError(f"device must be auto, cpu, cuda, cuda:N or mps, not {name!r}", "device")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BertLSTMError(f"device {name} was asked for, but no CUDA GPU is available", "device")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise BertLSTMError(f"device {name} was asked for, but there are {torch.cuda.device_count()} GPUs", "device")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BertLSTMError("device mps was asked for, but MPS is not available", "device")
    return torch.device(name)


def check_precision(device: torch.device, precision: str) -> None:
    """``mixed_precision`` fp16 needs a GPU: on a CPU it is refused, not run as something else. (bf16 runs on
    CPUs, natively where they have AVX512-BF16 or AMX, else emulated and slower.)"""
    if precision == "fp16" and device.type == "cpu":
        raise BertLSTMError(
            "`mixed_precision` fp16 needs a GPU (loss scaling is a GPU feature); on a CPU use no or bf16",
            "mixed_precision",
        )
