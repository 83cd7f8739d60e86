"""Typed configuration for the model and for training.

A model is built from its :class:`ModelConfig` and nothing else; training settings live apart in
:class:`TrainConfig` so that a saved model folder carries only what is needed to rebuild it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import BertLSTMError

MODES = ("frozen", "pooled", "finetune")
LAYERS = ("last", "second-to-last", "concat-last-4", "scalar-mix")


def _finite(value: float, name: str, low: float = 0.0, strict: bool = False, high: float = math.inf) -> None:
    """``value`` must be a finite number with ``low <(=) value <= high``."""
    ok = isinstance(value, int | float) and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok or value > high:
        bound = f"{'above' if strict else 'at least'} {low:g}" + (f" and at most {high:g}" if high < math.inf else "")
        raise BertLSTMError(f"`{name}` must be a finite number {bound}, not {value!r}", name)


def parse_threshold(value: str | float) -> str | float:
    """``per-label``, ``global`` or a number in (0, 1)."""
    if value in ("per-label", "global"):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number < 1.0:
        raise BertLSTMError(f"`threshold` must be per-label, global or a number in (0, 1), not {value!r}", "threshold")
    return number


def parse_class_weight(value: str | None) -> str | list[float] | None:
    """``None``, ``"balanced"`` or one finite positive weight per class (``"1,5"``)."""
    if value is None or value == "balanced":
        return value
    try:
        weights = [float(w) for w in str(value).split(",")]
    except ValueError:
        weights = []
    if not weights or not all(math.isfinite(w) and w > 0 for w in weights):
        raise BertLSTMError(
            f"`class_weight` must be 'balanced' or positive numbers such as '1,5', not {value!r}", "class_weight"
        )
    return weights


@dataclass
class ModelConfig:
    """Everything needed to rebuild a BERT→LSTM classifier."""

    encoder: str = "minilm"  # encoder name as the user gave it: "minilm", a local folder or a hub id
    mode: str = "frozen"  # "frozen" | "pooled" | "finetune"
    lstm_units: int = 64  # hidden size of each LSTM direction
    lstm_layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False  # read real tokens in both directions
    dropout: float = 0.1  # dropout before the dense layer (and between LSTM layers)
    max_length: int = 128  # word pieces per text, special tokens included; longer texts are truncated
    layers: str = "last"  # encoder layers the LSTM reads: last | second-to-last | concat-last-4 | scalar-mix
    multi_label: bool = False  # several labels per text: sigmoid outputs, binary cross-entropy
    thresholds: list[float] = field(default_factory=list)  # multi-label decision threshold per label (tuned on dev)
    label_names: list[str] = field(default_factory=list)  # class names, index = class id

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.layers not in LAYERS:
            raise ValueError(f"layers must be one of {', '.join(LAYERS)}, not {self.layers!r}")
        if self.lstm_units < 1 or self.lstm_layers < 1:
            raise ValueError("lstm_units and lstm_layers must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, not {self.max_length}")
        _finite(self.dropout, "dropout", high=0.99)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """How to train; not needed to use a trained model."""

    epochs: int = 5  # passes over the training data
    batch_size: int = 32  # examples per optimizer step
    lr: float = 1e-3  # learning rate of the LSTM and dense head
    encoder_lr: float = 2e-5  # learning rate of the encoder (finetune only)
    encoder_weight_decay: float = 0.001  # AdamW weight decay of the encoder (finetune only)
    weight_decay: float = 0.0  # weight decay of the LSTM and head
    warmup_ratio: float = 0.1  # fraction of steps with linear warmup (finetune only)
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size * grad_accum)
    patience: int = 0  # stop after this many epochs without a better dev metric; 0 = never stop early
    metric: str = "auto"  # dev metric that picks the best epoch: accuracy | macro_f1 | micro_f1 ("auto": accuracy,
    # or micro_f1 when multi-label)
    threshold: str | float = "per-label"  # multi-label decision threshold tuned on dev: per-label | global | a number
    class_weight: str | None = None  # loss weights: None, "balanced", or one number per class ("1,5")
    dev_fraction: float = 0.1  # stratified share of train held out when no dev set is given
    seed: int = 0  # seeds the split, initialisation, dropout and batch order
    device: str = "auto"  # "auto" (cuda, mps, cpu), "cuda", "mps" or "cpu"
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (through Accelerate)
    encode_batch_size: int = 256  # texts per batch when only the forward pass runs (sorted by length)
    progress: bool = True  # show a progress bar per epoch
    cache: bool = True  # frozen/pooled: compute encoder features once and read them back every epoch
    cache_dir: str | None = None  # feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm/features)
    cache_dtype: str = "float16"  # storage dtype of cached features ("float16" or "float32")
    pad_to_max_length: bool = False  # pad every batch to max_length, as the original recipe did (benchmarks only)

    def __post_init__(self) -> None:
        if self.grad_accum < 1 or self.patience < 0:
            raise ValueError("grad_accum must be at least 1 and patience at least 0")
        if self.metric not in ("auto", "accuracy", "macro_f1", "micro_f1"):
            raise ValueError(f"metric must be auto, accuracy, macro_f1 or micro_f1, not {self.metric!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.encode_batch_size < 1:
            raise ValueError("epochs, batch_size and encode_batch_size must be at least 1")
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in (0, 1), not {self.dev_fraction}")
        if self.cache_dtype not in ("float16", "float32"):
            raise ValueError(f"cache_dtype must be float16 or float32, not {self.cache_dtype!r}")
        if self.device.partition(":")[0] not in ("auto", "cuda", "mps", "cpu"):
            raise ValueError(f"device must be auto, cuda, cuda:N, mps or cpu, not {self.device!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, not {self.mixed_precision!r}")
        _finite(self.lr, "lr", strict=True)
        _finite(self.encoder_lr, "encoder_lr", strict=True)
        _finite(self.weight_decay, "weight_decay")
        _finite(self.encoder_weight_decay, "encoder_weight_decay")
        _finite(self.warmup_ratio, "warmup_ratio", high=1.0)
        _finite(self.max_grad_norm, "max_grad_norm")
        parse_threshold(self.threshold)
        parse_class_weight(self.class_weight)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
