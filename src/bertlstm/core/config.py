"""The settings every task shares: the encoder and the LSTM on it, the training, and the data files.

A task's model settings subclass :class:`EncoderSettings` (adding its own fields and changing defaults), its
data settings subclass :class:`DataConfig`; :class:`TrainConfig` is the same for every task. A model is built
from its settings and nothing else; what is learnt from the data (label names, thresholds, tags) is kept
beside them, never in them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from .encoder_names import check_layers, check_max_length, resolve_encoder
from .errors import BertLSTMError
from .settings import Settings, check_choice, check_device, check_int, check_number, setting

Mode = Literal["frozen", "pooled", "finetune"]
Layers = Literal["last", "second-to-last", "concat-last-4", "scalar-mix"]
Metric = Literal["auto", "accuracy", "macro_f1", "micro_f1"]
Precision = Literal["no", "fp16", "bf16"]
CacheDtype = Literal["float16", "float32"]
FeaturePass = Literal["fp32", "int8", "bf16", "auto"]
ThresholdRule = Literal["per-label", "global"]
# Named recipes: model settings that `preset` fills in. "strong" is the frozen recipe that BENCHMARKS.md measured
# best on SST-2 (dev 87.8 against 83.6 for the default recipe).
PRESETS: dict[str, dict[str, Any]] = {"strong": {"layers": "concat-last-4", "lstm_layers": 2, "bidirectional": True}}
# `encoder_lr` auto, by the encoder's width: the original recipe's 2e-5 was set for BERT-base (768 wide); narrower
# encoders such as the default (384) do better with more (bench/encoder_lr.py, BENCHMARKS.md).
WIDE_ENCODER, WIDE_ENCODER_LR, NARROW_ENCODER_LR = 768, 2e-5, 5e-5


@dataclass(frozen=True)
class TaskSettings(Settings):
    """What a run asks of a task's model settings: checks against the training settings, and against what the
    model is built from (before any work)."""

    def check_training(self, training: TrainConfig) -> None:
        """Settings that are fine alone but not together with these (a task adds its own)."""

    def check_sources(self) -> list[Path]:
        """What the model is built from, checked before any data is read; the local paths among it (a run's
        output may never be or hold them)."""
        return []


@dataclass(frozen=True)
class EncoderSettings(TaskSettings):
    """What every model here is built from: a pre-trained encoder, how it is used, and the LSTM that reads it."""

    encoder: str = setting("minilm", "'minilm' (the packaged all-MiniLM-L6-v2), a model folder or a hub id")
    mode: Mode = setting("frozen", "recipe: frozen or pooled encoder, or finetune it")
    layers: Layers = setting("last", "encoder layers the LSTM reads")
    lstm_units: int = setting(64, "hidden units of each LSTM direction")
    lstm_layers: int = setting(1, "stacked LSTM layers")
    bidirectional: bool = setting(False, "run the LSTM over real tokens in both directions")
    dropout: float = setting(0.1, "dropout before the dense layer (and between LSTM layers)")
    max_length: int = setting(128, "word pieces per text, special tokens included; longer texts are truncated")
    train_top_layers: int | None = setting(
        None,
        "finetune: train only the top K encoder layers, on cached states of the frozen ones (default: all)",
        metavar="K",
    )

    min_lstm_layers: ClassVar[int] = 1  # a task may allow 0 (a linear head on the encoder)
    min_max_length: ClassVar[int] = 2

    def __post_init__(self) -> None:
        self.check_choices()
        check_int(self.lstm_units, "lstm_units", 1)
        check_int(self.lstm_layers, "lstm_layers", self.min_lstm_layers)
        check_int(self.max_length, "max_length", self.min_max_length)
        check_number(self.dropout, "dropout", high=0.99)
        check_top_layers(self.train_top_layers, self.mode)

    def check_sources(self) -> list[Path]:
        """The encoder found, and ``max_length`` within its positions; its folder when it is a local one."""
        check_max_length(self.encoder, self.max_length)
        check_layers(self.encoder, self.layers)
        encoder = Path(resolve_encoder(self.encoder)).expanduser()
        return [encoder] if encoder.exists() else []


@dataclass(frozen=True)
class TrainConfig(Settings):
    """How to train; not needed to use a trained model."""

    epochs: int = setting(5, "passes over the training data")
    batch_size: int = setting(32, "examples per micro-batch")
    grad_accum: int = setting(1, "micro-batches per optimizer step (effective batch = batch_size x grad_accum)")
    lr: float = setting(1e-3, "learning rate of the LSTM and the head")
    encoder_lr: float | Literal["auto"] = setting(
        "auto", "learning rate of the encoder (finetune); auto: 2e-5 from 768 wide (BERT-base), else 5e-5", metavar="LR"
    )
    weight_decay: float = setting(0.0, "AdamW weight decay of the LSTM and the head")
    encoder_weight_decay: float = setting(0.001, "AdamW weight decay of the encoder (finetune)")
    warmup_ratio: float = setting(0.1, "share of optimizer steps with linear warmup (finetune)")
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 turns it off")
    patience: int = setting(0, "stop after this many epochs without a better dev metric; 0: never")
    checkpoint_minutes: float = setting(
        10.0, "a checkpoint to resume from at the first epoch's end after this many minutes; 0: after every epoch"
    )
    metric: Metric = setting("auto", "dev metric picking the best epoch (auto: the task's own, such as accuracy)")
    class_weight: Literal["balanced"] | tuple[float, ...] | None = setting(
        None, "loss weights: 'balanced', or one number per class such as 1,5", metavar="balanced|W1,W2,..."
    )
    threshold: float | ThresholdRule = setting(
        "per-label", "multi-label decision threshold, tuned on dev: per-label, global, or a number", metavar="T"
    )
    dev_fraction: float = setting(0.1, "share of train held out when no dev set is given")
    seed: int = setting(0, "seeds the split, initialisation, dropout and batch order")
    device: str = setting("auto", "auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    mixed_precision: Precision = setting("no", "mixed precision (through Accelerate)")
    encode_batch_size: int = setting(256, "texts per batch when only the forward pass runs (sorted by length)")
    progress: bool = setting(True, "progress bars (only ever on a terminal)")
    cache: bool = setting(
        True, "compute a frozen encoder's features (or frozen layers' states) once and read them back every epoch"
    )
    cache_dir: str | None = setting(
        None,
        "feature cache folder (default: $BERTLSTM_CACHE, else $XDG_CACHE_HOME/bertlstm/features, else "
        "~/.cache/bertlstm/features)",
    )
    cache_dtype: CacheDtype = setting("float16", "storage type of cached features")
    feature_pass: FeaturePass = setting(
        "fp32",
        "how the encoder computes what the cache stores: fp32; int8 linear layers (CPU only; faster); bf16 (only "
        "where the hardware has it: a CPU with AVX512-BF16 or AMX, a GPU; faster); or auto, the fastest this "
        "machine computes natively (bf16, else int8 on a CPU with VNNI or AMX, else fp32), recorded as chosen. "
        "Both move accuracy a little (see the README): fp32 is the default",
    )
    pad_to_max_length: bool = setting(False, "pad every batch to max_length, as the original recipe (to compare)")
    head_threads: int | None = setting(
        1, "CPU threads while only the LSTM and head train, on cached features (small steps that more threads slow)"
    )

    def __post_init__(self) -> None:
        self.check_choices()
        for name in ("epochs", "batch_size", "grad_accum", "encode_batch_size"):
            check_int(getattr(self, name), name, 1)
        if self.head_threads is not None:
            check_int(self.head_threads, "head_threads", 1)
        check_int(self.patience, "patience", 0)
        check_number(self.checkpoint_minutes, "checkpoint_minutes")
        check_int(self.seed, "seed", 0)
        check_number(self.lr, "lr", strict=True)
        if self.encoder_lr != "auto":
            check_number(self.encoder_lr, "encoder_lr", strict=True)
        for name in ("weight_decay", "encoder_weight_decay", "max_grad_norm"):
            check_number(getattr(self, name), name)
        check_number(self.warmup_ratio, "warmup_ratio", high=1.0)
        check_number(self.dev_fraction, "dev_fraction", strict=True, high=0.9)
        check_device(self.device)
        if isinstance(self.threshold, float | int):
            check_number(self.threshold, "threshold", strict=True, high=0.999)
        else:
            check_choice(self.threshold, ThresholdRule, "threshold")
        if isinstance(self.class_weight, tuple):
            for w in self.class_weight:
                check_number(w, "class_weight", strict=True)
        elif self.class_weight is not None:
            check_choice(self.class_weight, Literal["balanced"], "class_weight")

    def resolved(self, hidden_size: int) -> TrainConfig:
        """These settings with ``encoder_lr`` auto turned into the number it means for an encoder this wide."""
        return dataclasses.replace(self, encoder_lr=encoder_lr_for(self.encoder_lr, hidden_size))


@dataclass(frozen=True)
class DataConfig(Settings):
    """The data files of a run; a task's own subclass says how to read them."""

    train: str | None = setting(None, "training data", metavar="FILE")
    dev: str | None = setting(None, "dev data; without it, dev_fraction of train is held out", metavar="FILE")
    test: str | None = setting(None, "test data, evaluated once with the best model at the end", metavar="FILE")

    FILES: ClassVar[tuple[str, ...]] = ("train", "dev", "test")

    def files(self) -> list[str]:
        """The data files given (what an output folder must never hold)."""
        return [f for f in (self.train, self.dev, self.test) if f]

    def labelled(self, path: str) -> bool:
        """Whether the data file ``path`` (one of :meth:`files`) holds labels (a task may take texts alone)."""
        return True

    @classmethod
    def reading_fields(cls) -> list[str]:
        """How files are read, without which files: what ``predict`` and ``evaluate`` take of these settings."""
        return [name for name in cls.field_names() if name not in cls.FILES]


def encoder_lr_for(encoder_lr: float | str, hidden_size: int) -> float:
    """The encoder's learning rate: as given, or for ``auto`` the rule above."""
    if encoder_lr != "auto":
        return float(encoder_lr)
    return WIDE_ENCODER_LR if hidden_size >= WIDE_ENCODER else NARROW_ENCODER_LR


def check_top_layers(top: int | None, mode: str) -> None:
    """``train_top_layers`` is a number of encoder layers, for the ``finetune`` recipe."""
    if top is None:
        return
    check_int(top, "train_top_layers", 1)
    if mode != "finetune":
        raise BertLSTMError(
            f"`train_top_layers` is for mode finetune (mode {mode} trains no encoder layer)", "train_top_layers"
        )
