"""Every setting, typed, in one place: the model, the training, the data files and the run.

These dataclasses are the single source: the command line's ``train`` options are generated from their fields
(help text and choices are field metadata), a run can be written as a YAML or JSON file with the same sections
(``bertlstm train --config run.yaml``), and a saved model folder records its ``model`` and ``training``
sections. :meth:`Settings.from_dict` turns what a file or the command line gives (strings included) into
typed values, and every setting is checked once, when the object is built, with messages in library terms
(settings are named in backquotes, `` `lr` ``, which the CLI shows as ``--lr``).

A model is built from its :class:`ModelConfig` and nothing else; what is learnt from the data (label names,
thresholds) lives in :class:`~bertlstm.labels.Labels`, never in a config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import BertLSTMError

Mode = Literal["frozen", "pooled", "finetune"]
Layers = Literal["last", "second-to-last", "concat-last-4", "scalar-mix"]
Metric = Literal["auto", "accuracy", "macro_f1", "micro_f1"]
Precision = Literal["no", "fp16", "bf16"]
CacheDtype = Literal["float16", "float32"]
FeaturePass = Literal["fp32", "int8"]
ThresholdRule = Literal["per-label", "global"]
Backend = Literal["auto", "torch", "onnx"]
Task = Literal["classify", "tag"]
WordPooling = Literal["first", "mean", "first-last"]
Context = Literal["sentence", "document"]
TagScheme = Literal["auto", "iob1", "iob2", "bioes"]
S = TypeVar("S", bound="Settings")
# Named recipes: model settings that `preset` fills in. "strong" is the frozen recipe that BENCHMARKS.md measured
# best on SST-2 (dev 87.8 against 83.6 for the default recipe).
PRESETS: dict[str, dict[str, Any]] = {"strong": {"layers": "concat-last-4", "lstm_layers": 2, "bidirectional": True}}


def setting(default: Any, help: str, **metadata: Any) -> Any:
    """A config field with its help text (shown by ``--help``); ``metavar`` may be given too."""
    if isinstance(default, list | dict):
        raise TypeError("use a tuple for a sequence default")
    return field(default=default, metadata={"help": help, **metadata})


def typed_values(cls: type, values: dict[str, Any], where: str = "", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``values`` converted to the types of ``cls``'s fields; a name that is not a field is an error."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BertLSTMError(f"{where}unknown setting(s) {', '.join(unknown)}; known here: {', '.join(names)}")
    return {k: coerce(v, hints[k], k) for k, v in values.items()}


class Settings:
    """What every config section shares: building from a dict (typed, checked) and back."""

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any], where: str = "") -> S:
        """Build from plain values (a file's, or strings from a command line); unknown names are an error."""
        return cls(**typed_values(cls, values, where))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]  # tuples as lists

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments, values as they are (tuples stay tuples, sections stay objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def check_choices(self) -> None:
        """Every field whose type is a ``Literal`` holds one of its values."""
        for name, hint in typing.get_type_hints(type(self)).items():
            if get_origin(hint) is Literal:
                check_choice(getattr(self, name), hint, name)


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Everything needed to rebuild a BERT→LSTM classifier (besides its labels)."""

    encoder: str = setting("minilm", "'minilm' (the packaged all-MiniLM-L6-v2), a model folder or a hub id")
    mode: Mode = setting("frozen", "recipe: frozen or pooled encoder, or finetune it")
    layers: Layers = setting("last", "encoder layers the LSTM reads")
    lstm_units: int = setting(64, "hidden units of each LSTM direction")
    lstm_layers: int = setting(1, "stacked LSTM layers")
    bidirectional: bool = setting(False, "run the LSTM over real tokens in both directions")
    dropout: float = setting(0.1, "dropout before the dense layer (and between LSTM layers)")
    max_length: int = setting(128, "word pieces per text, special tokens included; longer texts are truncated")
    multi_label: bool = setting(False, "several labels per text: sigmoid outputs, binary cross-entropy")
    train_top_layers: int | None = setting(
        None,
        "finetune: train only the top K encoder layers, on cached states of the frozen ones; none: all",
        metavar="K",
    )

    def __post_init__(self) -> None:
        self.check_choices()
        check_int(self.lstm_units, "lstm_units", 1)
        check_int(self.lstm_layers, "lstm_layers", 1)
        check_int(self.max_length, "max_length", 2)
        check_number(self.dropout, "dropout", high=0.99)
        check_top_layers(self.train_top_layers, self.mode)


@dataclass(frozen=True)
class TaggerConfig(Settings):
    """Everything needed to rebuild a BERT→BiLSTM→CRF tagger (besides its tags)."""

    encoder: str = setting("minilm", "'minilm' (the packaged all-MiniLM-L6-v2), a model folder or a hub id")
    mode: Literal["frozen", "finetune"] = setting("frozen", "recipe: frozen encoder, or finetune it")
    layers: Layers = setting("last", "encoder layers the LSTM reads")
    word_pooling: WordPooling = setting("first", "tagging: a word is its first word piece, their mean, or first+last")
    lstm_units: int = setting(128, "hidden units of each LSTM direction")
    lstm_layers: int = setting(2, "stacked LSTM layers")
    bidirectional: bool = setting(True, "run the LSTM over real tokens in both directions")
    dropout: float = setting(0.1, "dropout before the dense layer (and between LSTM layers)")
    max_length: int = setting(128, "word pieces per encoder window; longer sentences get overlapping windows")
    crf: bool = setting(False, "tagging: a linear-chain CRF over the tags (Viterbi decoding with valid moves)")
    context: Context = setting("sentence", "tagging: encode each sentence alone, or amid its document's sentences")
    train_top_layers: int | None = setting(
        None,
        "finetune: train only the top K encoder layers, on cached states of the frozen ones; none: all",
        metavar="K",
    )

    def __post_init__(self) -> None:
        self.check_choices()
        check_int(self.lstm_units, "lstm_units", 1)
        check_int(self.lstm_layers, "lstm_layers", 0)  # 0: a linear head on the encoder
        check_int(self.max_length, "max_length", 8)
        check_number(self.dropout, "dropout", high=0.99)
        check_top_layers(self.train_top_layers, self.mode)


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
    metric: Metric = setting("auto", "dev metric picking the best epoch (auto: accuracy; macro_f1 if multi-label)")
    class_weight: Literal["balanced"] | tuple[float, ...] | None = setting(
        None, "loss weights: 'balanced', or one number per class such as 1,5", metavar="balanced|W1,W2,..."
    )
    threshold: float | ThresholdRule = setting(
        "per-label", "multi-label decision threshold, tuned on dev: per-label, global, or a number", metavar="T"
    )
    dev_fraction: float = setting(0.1, "stratified share of train held out when no dev set is given")
    seed: int = setting(0, "seeds the split, initialisation, dropout and batch order")
    device: str = setting("auto", "auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    mixed_precision: Precision = setting("no", "mixed precision (through Accelerate)")
    encode_batch_size: int = setting(256, "texts per batch when only the forward pass runs (sorted by length)")
    progress: bool = setting(True, "progress bars (only ever on a terminal)")
    cache: bool = setting(
        True, "compute a frozen encoder's features (or frozen layers' states) once and read them back every epoch"
    )
    cache_dir: str | None = setting(None, "feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm)")
    cache_dtype: CacheDtype = setting("float16", "storage type of cached features")
    feature_pass: FeaturePass = setting(
        "fp32", "how the encoder computes what the cache stores: fp32, or int8 linear layers (CPU only; faster)"
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
        check_int(self.seed, "seed", 0)
        check_number(self.lr, "lr", strict=True)
        if self.encoder_lr != "auto":
            check_number(self.encoder_lr, "encoder_lr", strict=True)
        for name in ("weight_decay", "encoder_weight_decay", "max_grad_norm"):
            check_number(getattr(self, name), name)
        check_number(self.warmup_ratio, "warmup_ratio", high=1.0)
        check_number(self.dev_fraction, "dev_fraction", strict=True, high=0.9)
        if self.device.partition(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise BertLSTMError(f"`device` must be auto, cpu, cuda, cuda:N or mps, not {self.device!r}", "device")
        if isinstance(self.threshold, float | int):
            check_number(self.threshold, "threshold", strict=True, high=0.999)
        else:
            check_choice(self.threshold, ThresholdRule, "threshold")
        if isinstance(self.class_weight, tuple):
            for w in self.class_weight:
                check_number(w, "class_weight", strict=True)
        elif self.class_weight is not None:
            check_choice(self.class_weight, Literal["balanced"], "class_weight")


@dataclass(frozen=True)
class DataConfig(Settings):
    """The data files of a run and how to read them."""

    train: str | None = setting(None, "training data (.csv, .tsv, .jsonl, .parquet; .gz allowed)", metavar="FILE")
    dev: str | None = setting(None, "dev data; without it, dev_fraction of train is held out", metavar="FILE")
    test: str | None = setting(None, "test data, evaluated once with the best model at the end", metavar="FILE")
    text_column: str | None = setting(None, "column holding the text (default: text, sentence, ...)")
    label_column: str | None = setting(None, "column holding the label (default: label, labels, ...)")
    label_separator: str = setting(",", "separates the labels of one text when multi-label")
    tag_column: int = setting(-1, "tagging: the CoNLL column holding the tag (0 is the token; -1 the last)")
    tag_scheme: TagScheme = setting("auto", "tagging: how the files' tags are written (auto: detected)")

    def __post_init__(self) -> None:
        self.check_choices()
        if self.tag_column == 0 or not isinstance(self.tag_column, int):
            raise BertLSTMError(
                "`tag_column` must be a column after the token's: 1, 2, ... or -1 (the last)", "tag_column"
            )


@dataclass(frozen=True)
class RunConfig(Settings):
    """A training run from files: what ``bertlstm train`` does, and what ``--config FILE`` holds."""

    task: Task = setting("classify", "classify texts, or tag the words of sentences (CoNLL or JSON Lines files)")
    preset: Literal["strong"] | None = setting(
        None, "a named recipe: strong = concat-last-4 layers into a 2-layer BiLSTM; settings given beside it win"
    )
    output: str | None = setting(None, "model folder to write (replaced atomically at the end)", metavar="DIR")
    overwrite: bool = setting(False, "replace output even if it is not a bertlstm model folder (never input data)")
    seeds: tuple[int, ...] = setting((), "several seeds such as 0,1,2: one model each in OUTPUT/seed-N", metavar="S")
    tensorboard: str | None = setting(None, "also log each epoch to TensorBoard in this folder", metavar="DIR")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig | TaggerConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    SECTIONS: typing.ClassVar[dict[str, type[Settings]]] = {
        "data": DataConfig,
        "model": ModelConfig,
        "training": TrainConfig,
    }

    def __post_init__(self) -> None:
        self.check_choices()
        if isinstance(self.model, TaggerConfig) != (self.task == "tag"):
            raise BertLSTMError(
                f"`task` {self.task} needs {'TaggerConfig' if self.task == 'tag' else 'ModelConfig'} settings"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise BertLSTMError(f"`seeds` {list(self.seeds)} repeat a seed; each seed must be different", "seeds")
        check_together(self.model, self.training)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "") -> RunConfig:
        """Sections as dicts (``{"model": {...}, "training": {...}}``) and the run's own settings."""
        values = dict(values)
        sections: dict[str, Any] = {}
        task = values.get("task", "classify")
        preset = values.get("preset")
        if preset is not None and preset not in PRESETS and str(preset).lower() not in ("none", "null"):
            raise BertLSTMError(f"{where}`preset` must be one of {', '.join(PRESETS)}, not {preset!r}", "preset")
        chosen: dict[str, type[Settings]] = {**cls.SECTIONS, **({"model": TaggerConfig} if task == "tag" else {})}
        for name, section in chosen.items():
            given = values.pop(name, None) or {}
            if not isinstance(given, dict):
                raise BertLSTMError(f"{where}the {name!r} section must be a mapping of settings")
            if name == "model":  # a preset's settings, under those given
                given = {**PRESETS.get(str(preset), {}), **given}
            sections[name] = section.from_dict(given, f"{where}{name}: ")
        return cls(**typed_values(cls, values, where, skip=tuple(cls.SECTIONS)), **sections)

    def require_files(self) -> None:
        """A run needs its training data and an output folder."""
        if not self.data.train or not self.output:
            raise BertLSTMError("a training run needs `train` data and an `output` folder")


# `encoder_lr` auto, by the encoder's width: the original recipe's 2e-5 was set for BERT-base (768 wide); narrower
# encoders such as the default (384) do better with more (bench/encoder_lr.py, BENCHMARKS.md).
WIDE_ENCODER, WIDE_ENCODER_LR, NARROW_ENCODER_LR = 768, 2e-5, 5e-5


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


def check_together(model: ModelConfig | TaggerConfig, training: TrainConfig) -> None:
    """Settings that are fine alone but not together."""
    if isinstance(model, TaggerConfig):
        if training.metric == "macro_f1":
            raise BertLSTMError(
                "`metric` for tagging is micro_f1 (entities, the default) or accuracy (words)", "metric"
            )
        return
    if training.metric == "micro_f1" and not model.multi_label:
        raise BertLSTMError("`metric` micro_f1 is for multi-label tasks; use accuracy or macro_f1", "metric")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A run config from a ``.yaml``/``.yml`` or ``.json`` file, as a plain dict (checked by ``from_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise BertLSTMError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise BertLSTMError(f"config file {path}: use a .yaml, .yml or .json file")
    import yaml  # only when a YAML file is read

    try:
        values = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise BertLSTMError(f"config file {path} cannot be read: {str(err).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise BertLSTMError(f"config file {path} must hold a mapping of settings")
    return values


# --- typed values from plain ones -------------------------------------------------------------------
def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` (a string from a command line, or a file's value) as the type ``hint`` says."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for alt in (a for a in args if a is not type(None)):
            try:
                return coerce(value, alt, name)
            except BertLSTMError:
                continue
        raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name)
    if origin is Literal:
        if value in args:
            return value
        raise BertLSTMError(f"`{name}` must be one of {', '.join(map(str, args))}, not {value!r}", name)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name)
        try:
            return tuple(coerce(item.strip() if isinstance(item, str) else item, args[0], name) for item in items)
        except BertLSTMError:
            raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name) from None
    return _scalar(value, hint, name)


def _scalar(value: Any, hint: Any, name: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"no rule to read a setting of type {hint}")
    raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name)


def describe(hint: Any) -> str:
    """A type in words, for messages and help."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        words = [", ".join(get_args(a)) if get_origin(a) is Literal else describe(a) for a in args]
        return " or ".join(w for a, w in zip(args, words, strict=True) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return f"a comma-separated list of {describe(args[0]).removeprefix('a ')}s"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}.get(hint, str(hint))


# --- checks ---------------------------------------------------------------------------------------------
def check_int(value: int, name: str, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BertLSTMError(f"`{name}` must be a whole number of at least {low}, not {value!r}", name)


def check_number(value: float, name: str, strict: bool = False, high: float = math.inf) -> None:
    """A finite number above 0 (``strict``) or at least 0, and at most ``high``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (strict and value == 0) or value > high:
        bound = "above 0" if strict else "at least 0"
        bound += f" and at most {high:g}" if high < math.inf else ""
        raise BertLSTMError(f"`{name}` must be a finite number {bound}, not {value!r}", name)


def check_choice(value: Any, hint: Any, name: str) -> None:
    if value not in get_args(hint):
        raise BertLSTMError(f"`{name}` must be one of {', '.join(get_args(hint))}, not {value!r}", name)


@dataclass(frozen=True)
class ServeConfig(Settings):
    """An HTTP server for one model: what ``bertlstm serve`` takes."""

    model: str | None = setting(None, "model folder, or an exported .onnx file", metavar="PATH")
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on")
    backend: Backend = setting("auto", "torch, onnx, or auto (onnx for a .onnx file)")
    quantize: Literal["int8"] | None = setting(None, "torch back end: int8 weights for linear and LSTM layers")
    device: str = setting("auto", "torch back end: auto, cpu, cuda, cuda:N or mps")
    workers: int = setting(1, "server processes, each with its own copy of the model")
    max_batch: int = setting(64, "texts per request at most")
    max_chars: int = setting(5000, "characters per text at most")
    max_body_bytes: int = setting(1_000_000, "request body size at most")
    batch_size: int = setting(64, "texts per forward pass: concurrent requests share one")
    max_wait_ms: float = setting(5.0, "how long a request waits for others to share its forward pass")
    queue_size: int = setting(256, "requests waiting at most; more are answered 503")

    def __post_init__(self) -> None:
        self.check_choices()
        if self.quantize is not None:
            check_choice(self.quantize, Literal["int8"], "quantize")
        for name in ("workers", "max_batch", "max_chars", "max_body_bytes", "batch_size", "queue_size"):
            check_int(getattr(self, name), name, 1)
        check_int(self.port, "port", 0)
        check_number(self.max_wait_ms, "max_wait_ms", high=10_000)
