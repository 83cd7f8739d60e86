"""Running a trained model: one engine interface under every task's predictor.

An :class:`Engine` runs a model's graph over one padded batch — named int64 arrays in, one float32 array out —
through PyTorch (:class:`~bertlstm.core.torch_engine.TorchEngine`, a model in memory, optionally int8) or
onnxruntime (:class:`OnnxEngine`, an exported graph, fp32 or int8). A task's :class:`Predictor` does the rest,
the same way for both: word pieces with the ``tokenizers`` library, length-sorted batches, and turning the
engine's output into answers (a label and probabilities; tagged words and entities). So the ONNX path needs
neither torch nor transformers, and a PyTorch model and its export answer through the same code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .batching import sorted_batches
from .errors import BertLSTMError, missing_package, needs_packages
from .model_folder import file_sha256
from .progress import Progress

# Texts per forward pass when predicting: on a CPU small batches are fastest (SST-2 dev, 2 cores: 2.7 s at 32
# against 3.8 s at 256, BENCHMARKS.md); elsewhere large ones.
CPU_PREDICT_BATCH, DEVICE_PREDICT_BATCH = 32, 256
logger = logging.getLogger(__name__)
# The format of an export's metadata (NAME.json). 2: the metadata records its tokenizer's SHA-256 and the
# config.json it was exported from, and each graph carries the SHA-256 of the metadata (STAMP).
EXPORT_FORMAT = 2
STAMP = "bertlstm.metadata_sha256"  # the key of that checksum in a graph's metadata_props


class Engine(ABC):
    """Runs a model's graph over one padded batch."""

    kind: ClassVar[str]  # "torch" or "onnx"
    precision: str = "fp32"  # what it computes in: fp32, int8 or bf16
    on_cpu: bool = True

    @property
    def quantized(self) -> str | None:
        """ "int8" when its linear (and LSTM) weights are int8."""
        return "int8" if self.precision == "int8" else None

    @abstractmethod
    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's output for a batch of named int64 arrays."""


class OnnxEngine(Engine):
    """An exported graph (``bertlstm export``) through onnxruntime. With ``meta`` (its export's metadata), the
    graph must carry that metadata's checksum (:data:`STAMP`): a metadata or tokenizer file changed, or taken
    from another export, is refused."""

    kind = "onnx"

    def __init__(
        self,
        path: str | Path,
        output: str,
        quantized: str | None,
        threads: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort  # the export extra: only for an .onnx model
        except ImportError as err:
            raise missing_package(err, "export") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output, self.precision = output, quantized or "fp32"
        self.inputs = [i.name for i in self.session.get_inputs()]
        if meta is not None:
            check_stamp(Path(path), self.session.get_modelmeta().custom_metadata_map.get(STAMP), meta)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], {name: inputs[name] for name in self.inputs})[0]


def plain_tokenizer(tokenizer: Any, truncate_at: int | None) -> Any:
    """A ``tokenizers.Tokenizer``: the fast tokenizer of a transformers tokenizer (a copy), or one read from a
    file; no padding, and truncation at ``truncate_at`` word pieces (special tokens included) or none."""
    from tokenizers import Tokenizer  # light, but only prediction and export need it

    if isinstance(tokenizer, str | Path):
        plain = Tokenizer.from_file(str(tokenizer))
    else:
        plain = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    plain.no_padding()
    if truncate_at is None:
        plain.no_truncation()
    else:
        plain.enable_truncation(truncate_at)
    return plain


class DamagedExport(BertLSTMError):
    """An export whose files do not match each other: damaged, edited, or put together from two exports."""


def metadata_digest(meta: dict[str, Any]) -> str:
    """The SHA-256 of an export's metadata but the graphs' own checksums: what each graph carries (:data:`STAMP`)."""
    described = {k: v for k, v in meta.items() if k not in ("sha256", "graphs")}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def check_stamp(path: Path, stamp: str | None, meta: dict[str, Any]) -> None:
    """``stamp``, the checksum the graph ``path`` carries, against its metadata ``meta``."""
    if stamp is None and int(meta.get("format_version") or 1) < 2:
        logger.warning(f"{path} was exported by an earlier bertlstm: its metadata cannot be checked; export it again")
        return
    if stamp != metadata_digest(meta):
        raise DamagedExport(
            f"{path.with_suffix('.json')} or the tokenizer beside it is not what {path.name} was exported with "
            "(changed since, or taken from another export): export the model again"
        )


def read_export_metadata(path: Path) -> dict[str, Any]:
    """The metadata beside an exported graph (``NAME.json``), checked: format, and the checksums of the graphs
    and the tokenizer (the graphs' own stamp is checked as they are loaded, :class:`OnnxEngine`)."""
    companion = path.with_suffix(".json")
    if path.suffix != ".onnx" or not path.is_file():
        raise BertLSTMError(f"{path} is not an exported .onnx file (bertlstm export writes one)")
    try:
        meta = json.loads(companion.read_text())
    except (OSError, ValueError):
        raise DamagedExport(f"{companion} is missing or not JSON: export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != "bertlstm-onnx":
        raise DamagedExport(f"{companion} does not describe a bertlstm export: export the model again")
    tokenizer = path.with_name(str(meta.get("tokenizer")))
    if not tokenizer.is_file():
        raise DamagedExport(f"{companion}: the tokenizer it names, {meta.get('tokenizer')}, is not beside it")
    if int(meta.get("format_version") or 1) > EXPORT_FORMAT:
        raise BertLSTMError(f"{path} was exported by a newer bertlstm (format {meta['format_version']}); upgrade")
    if file_sha256(path) != meta.get("sha256"):
        raise DamagedExport(f"{path} is damaged: its SHA-256 differs from the one recorded at export")
    if "tokenizer_sha256" in meta and file_sha256(tokenizer) != meta["tokenizer_sha256"]:
        raise DamagedExport(f"{tokenizer} is damaged: its SHA-256 differs from the one recorded at export")
    for graph in (meta.get("graphs") or {}).values():  # an export in several graphs: the others too
        other = path.with_name(str(graph.get("file")))
        if not other.is_file() or file_sha256(other) != graph.get("sha256"):
            raise DamagedExport(f"{other} is missing or damaged: export the model again")
    if "model" not in meta:  # exported before the metadata held the model's settings whole
        meta["model"] = {k: meta[k] for k in ("mode", "encoder", "max_length", "word_pooling", "context") if k in meta}
    return meta


def written_files(output: str | Path) -> list[Path]:
    """Every file an export to ``output`` writes: the graph, its tokenizer and its metadata."""
    path = Path(output).expanduser().resolve()
    stem = path.with_suffix("")
    return [path, Path(f"{stem}.tokenizer.json"), Path(f"{stem}.json")]


def is_export(path: Path) -> bool:
    """Whether ``NAME.onnx`` and the files beside it are an export bertlstm wrote: ``NAME.json`` says so, names
    ``NAME.tokenizer.json``, and none of them is a link."""
    meta_file = path.with_suffix(".json")
    if any(p.is_symlink() for p in written_files(path)):
        return False
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(meta, dict)
        and meta.get("format") == "bertlstm-onnx"
        and meta.get("tokenizer") == (f"{path.stem}.tokenizer.json")
    )


class Predictor(ABC):
    """A trained model of one task behind an engine: what ``predict``, ``evaluate``, ``serve`` and the
    estimators' own ``predict`` use.

    ``meta`` describes the model as an export's metadata does (:meth:`bertlstm.core.estimator.Estimator.
    describe`): the task, the model settings, the labels and the special token ids. A task's predictor adds
    how its inputs become batches and its outputs answers.
    """

    task: ClassVar[str]
    output: ClassVar[str]  # the graph's output: logits, emissions
    max_chars: ClassVar[int] = 5000  # the longest text the server takes by default
    max_body_bytes: ClassVar[int] = 1_000_000  # the largest request the server takes by default
    progress: str | None = None  # what a bar over the batches says (an evaluation sets it); None: no bar
    explains: ClassVar[bool] = False  # whether it can say why (:meth:`explain`)
    follows_gradients: ClassVar[bool] = False  # whether it can say why by gradients, not only by occlusion
    explaining: dict[str, Any] | None = None  # explain's keywords: every prediction then says why
    graph_due: bool = False  # a model folder on PyTorch until its graph is exported (graph_cache.finish)
    cpu_batch: ClassVar[int] = CPU_PREDICT_BATCH  # texts per forward pass on a CPU, unless given

    def __init__(self, engine: Engine, meta: dict[str, Any], tokenizer: Any, batch_size: int | None = None) -> None:
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise BertLSTMError(f"`batch_size` must be a whole number of at least 1, not {batch_size!r}", "batch_size")
        self.engine, self.meta, self.tokenizer = engine, meta, tokenizer
        self.batch_size = batch_size or (self.cpu_batch if engine.on_cpu else DEVICE_PREDICT_BATCH)
        self.model = meta["model"]  # the model settings, as config.json holds them
        self.pad_id = int(meta["pad_token_id"])

    @classmethod
    def from_export(
        cls,
        path: str | Path,
        meta: dict[str, Any],
        batch_size: int | None = None,
        stamped: dict[str, Any] | None = None,
    ) -> Predictor:
        """An exported graph with its tokenizer (``meta["tokenizer"]``: beside it, or a path), through
        onnxruntime; the graph is checked against ``stamped``, the metadata it was exported with (default:
        ``meta``)."""
        path = Path(path)
        tokenizer = plain_tokenizer(path.parent / meta["tokenizer"], cls.truncation(meta))
        engine = OnnxEngine(path, cls.output, meta.get("quantized"), meta=meta if stamped is None else stamped)
        return cls(engine, meta, tokenizer, batch_size)

    @classmethod
    def truncation(cls, meta: dict[str, Any]) -> int | None:
        """Where the tokenizer cuts a text: at the model's ``max_length``, unless a task reads every piece."""
        return int(meta["model"]["max_length"])

    def metadata(self) -> dict[str, Any]:
        """What ``GET /metadata`` shows: back end, task, labels, mode, encoder, max length, format version."""
        model = self.model
        described = {k: model.get(k) for k in ("mode", "encoder", "max_length", "teacher") if k in model}
        return {
            "backend": self.engine.kind,
            "task": self.task,
            "quantized": self.engine.quantized,
            "precision": self.engine.precision,
            "format_version": self.meta.get("format_version"),
            **described,
            "labels": self.meta["labels"],
        }

    @abstractmethod
    def batch_of(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw texts as one padded batch, as the engine receives it (what an export is checked on)."""

    def batches(self, dataset: Any, rows: Sequence[int]) -> Iterator[tuple[list[int], np.ndarray]]:
        """The engine's output over ``rows`` of ``dataset``, in length-sorted batches: (positions in ``rows``,
        output for them)."""
        lengths = dataset.lengths
        with Progress(self.progress, total=len(rows), unit="text") as step:
            for batch in sorted_batches([lengths[i] for i in rows], self.batch_size):
                yield batch, self.engine(dataset.collate([(dataset[rows[j]][0], None) for j in batch]))
                step.update(len(batch))

    # --- what every task answers ---------------------------------------------------------------------
    @abstractmethod
    def answer(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON object per raw text: what the server answers, and ``predict --text`` writes."""

    def explain(
        self, texts: Sequence[str], method: str | None = None, steps: int = 32, label: str | None = None
    ) -> list[dict[str, Any]]:
        """Per text, why the model answered as it did (by ``method``; ``label``: why that label): fields to add
        to its answer."""
        raise BertLSTMError(f"a {self.task} model cannot explain its predictions yet", "explain")

    def explain_method(self, method: str | None) -> str:
        """``method`` checked for this model, or the best it has: integrated gradients where gradients can be
        followed (a model in memory, in fp32, whose task follows them) and Captum is installed, else
        occlusion. Refused before any text is read."""
        if not self.explains:
            raise BertLSTMError(f"a {self.task} model cannot explain its predictions yet", "explain")
        gradients = self.follows_gradients and self.engine.kind == "torch" and self.engine.precision == "fp32"
        if method is None:  # the best at hand: without Captum, occlusion
            method = "integrated-gradients" if gradients and importlib.util.find_spec("captum") else "occlusion"
        if method != "occlusion" and not gradients:
            why = (
                "an exported graph, int8 weights or bf16 do not have"
                if self.follows_gradients
                else "taggers do not follow yet"
            )
            raise BertLSTMError(
                f"`explain_method` {method} follows gradients, which {why}: explain by occlusion"
                + (", or with the model folder in fp32" if self.follows_gradients else ""),
                "explain_method",
            )
        if method != "occlusion":
            needs_packages(("captum",), "explain")
        return method

    @abstractmethod
    def read_file(self, path: str, chunk_rows: int) -> Iterator[Any]:
        """A file to predict, in chunks (pandas DataFrames); raw texts come as a table with a ``text`` column."""

    @abstractmethod
    def predict_frame(self, frame: Any, data: Any, where: str) -> Any:
        """One chunk of inputs (from ``where``, for messages) with its predictions added; ``data``: the task's
        data settings (which column holds the text, ...)."""

    @abstractmethod
    def evaluate_file(self, path: str, data: Any) -> dict[str, Any]:
        """The evaluation report on a labelled file, read with the task's data settings ``data``."""

    @staticmethod
    @abstractmethod
    def format_report(report: dict[str, Any]) -> str:
        """An evaluation report as readable tables."""
