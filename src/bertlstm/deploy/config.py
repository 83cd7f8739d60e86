"""The settings of the commands that use a trained model: ``predict``, ``evaluate``, ``export`` and ``serve``.
As ``train``'s, the command line's options are generated from these fields. How a file is read (its columns,
its tags) is the model's task's own data settings (:meth:`~bertlstm.tasks.registry.ModelRef.reading`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.errors import BertLSTMError
from ..core.settings import Settings, check_choice, check_device, check_int, check_number, setting

Backend = Literal["auto", "torch", "onnx"]
Precision = Literal["fp32", "int8", "bf16", "auto"]  # core.graph_cache.PRECISIONS
ExplainMethod = Literal["integrated-gradients", "gradient-x-input", "occlusion"]  # core.attribution.METHODS


@dataclass(frozen=True)
class ModelSettings(Settings):
    """Which model, and how it runs: what every command that uses a trained model shares."""

    model: str | None = setting(None, "model folder, Hub id (user/name), or exported .onnx file", metavar="PATH")
    backend: Backend = setting(
        "auto",
        "auto: onnxruntime for a .onnx file, and on a CPU for a model folder too (its graph exported once into a "
        "cache); torch; or onnx",
    )
    quantize: Literal["int8"] | None = setting(None, "torch back end: int8 weights for linear and LSTM layers")
    precision: Precision = setting(
        "fp32",
        "what the model computes in: fp32; int8 (a model folder's graph quantized by onnxruntime, cached; on "
        "PyTorch its int8 weights); bf16 (PyTorch, only where the hardware has it: a CPU with AVX512-BF16 or AMX, "
        "a GPU); or auto, the fastest this machine computes natively (bf16, else int8 on a CPU with VNNI or AMX, "
        "else fp32), logged. Lower precisions move answers a little (see the README): fp32 is the default",
    )
    device: str = setting("auto", "torch back end: auto, cpu, cuda, cuda:N or mps")
    batch_size: int | None = setting(None, "texts per forward pass (default: 32 on a CPU, else 256)", metavar="N")

    def __post_init__(self) -> None:
        self.check_choices()
        if self.quantize is not None:
            check_choice(self.quantize, Literal["int8"], "quantize")
        check_device(self.device)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", 1)


@dataclass(frozen=True)
class PredictConfig(ModelSettings):
    """``bertlstm predict``: texts from a file, the command line or stdin; predictions to a file or stdout."""

    input: str | None = setting(
        None, "file of texts (or, for a tagger, of tokens); else --text or stdin lines", metavar="FILE"
    )
    output: str | None = setting(
        None, "predictions file (.csv .tsv .jsonl .json .parquet; a tagger's .conll) (default: stdout)", metavar="FILE"
    )
    text: tuple[str, ...] = setting((), "a text to label (repeatable)", metavar="TEXT", repeat=True)
    chunk_rows: int = setting(10_000, "rows of a file read, predicted and written at a time")
    explain: bool = setting(False, "add why: each word's score for the predicted label (an `explanation` column)")
    explain_method: ExplainMethod | None = setting(
        None, "how words are scored (default: integrated-gradients where gradients can be followed, else occlusion)"
    )
    explain_steps: int = setting(32, "integrated gradients: points on the path from the baseline, in one batch")
    explain_label: str | None = setting(None, "explain this label, not the predicted one", metavar="LABEL")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.chunk_rows, "chunk_rows", 1)
        check_int(self.explain_steps, "explain_steps", 2)
        if not self.explain:
            given = [name for name in ("explain_method", "explain_label") if getattr(self, name) is not None]
            if given:
                raise BertLSTMError(f"`{given[0]}` says how to explain, which needs `explain`", given[0])


@dataclass(frozen=True)
class EvaluateConfig(ModelSettings):
    """``bertlstm evaluate``: a model scored on a labelled file."""

    data: str | None = setting(None, "labelled data file", metavar="FILE")


@dataclass(frozen=True)
class ExportConfig(Settings):
    """``bertlstm export``: a model folder as one ONNX graph, with its tokenizer and metadata beside it."""

    model: str | None = setting(None, "model folder or Hub id", metavar="DIR")
    output: str | None = setting(None, "the .onnx file; NAME.tokenizer.json and NAME.json go beside it", metavar="FILE")
    format: Literal["onnx"] = setting("onnx", "export format")
    quantize: Literal["int8"] | None = setting(None, "onnxruntime dynamic int8 quantization")
    overwrite: bool = setting(False, "replace existing files of these names (never the model's own)")

    def __post_init__(self) -> None:
        self.check_choices()
        if self.quantize is not None:
            check_choice(self.quantize, Literal["int8"], "quantize")


@dataclass(frozen=True)
class ServeConfig(ModelSettings):
    """An HTTP server for one model: what ``bertlstm serve`` takes."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on")
    workers: int = setting(1, "server processes, each with its own copy of the model")
    max_batch: int = setting(64, "texts per request at most")
    max_chars: int | None = setting(
        None,
        "characters per text at most (default: the model's: 5000, or 10 million for documents)",
        metavar="N",
    )
    max_body_bytes: int | None = setting(
        None, "request body size at most (default: the model's, 1,000,000; a document classifier's 64 MiB)", metavar="N"
    )
    batch_size: int = setting(64, "texts per micro-batch: concurrent requests share one forward pass")
    max_wait_ms: float = setting(5.0, "how long a request waits for others to share its forward pass")
    queue_size: int = setting(256, "requests waiting at most; more are answered 503")
    shutdown_grace: float = setting(10.0, "seconds after SIGTERM to answer queued requests; the rest get 503")
    api_key_file: str | None = setting(
        None, "file whose first line is the key requests must carry (else $BERTLSTM_API_KEY)", metavar="FILE"
    )
    insecure: bool = setting(False, "allow serving a non-loopback address without an API key")
    docs: bool = setting(False, "serve the interactive /docs page (its scripts load from a CDN)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("workers", "max_batch", "queue_size"):
            check_int(getattr(self, name), name, 1)
        for name in ("max_chars", "max_body_bytes"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, 1)
        check_int(self.port, "port", 0)
        if self.port > 65535:
            raise BertLSTMError(f"`port` must be at most 65535, not {self.port}", "port")
        check_number(self.max_wait_ms, "max_wait_ms", high=10_000)
        check_number(self.shutdown_grace, "shutdown_grace", strict=True, high=3600)
