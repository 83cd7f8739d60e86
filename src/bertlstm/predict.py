"""Using a trained model: logits over a dataset in length-sorted batches, the prediction back ends, and
predictions for files of any size.

A back end is anything with ``labels`` and ``predict_proba(texts)``: :class:`TorchPredictor` (a model folder,
optionally with its linear and LSTM layers quantized to int8) or :class:`OnnxPredictor` (an exported graph,
run by onnxruntime with the ``tokenizers`` library: no torch, no transformers). :func:`predict_file` streams
a file through one in chunks, so that a file of millions of lines is never held in memory as tensors, and
writes each chunk as it is done. Nothing here imports the training loop.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from .data import sorted_batches
from .errors import BertLSTMError, missing_package
from .labels import Labels

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
M = TypeVar("M", bound="torch.nn.Module")
PREDICTION_SUFFIXES = (".csv", ".tsv", ".jsonl")


def predict_logits(model: Any, dataset: Any, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits (N, C) in dataset order; batches sorted by length so that little goes to padding.

    ``dataset`` is a :class:`~bertlstm.data.TokenDataset` or a cached-feature dataset: anything with
    ``lengths``, items and ``collate``.
    """
    import torch

    out = np.zeros((len(dataset), model.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for rows in sorted_batches(dataset.lengths, batch_size):
            batch = dataset.collate([(dataset[i][0], None) for i in rows])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[rows] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


# --- back ends ---------------------------------------------------------------------------------------------
class Predictor(Protocol):
    """What serving and batch prediction need of a back end."""

    labels: Labels

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (N, C), columns in ``labels.names`` order."""
        ...

    def metadata(self) -> dict[str, Any]:
        """What ``GET /metadata`` shows: labels, mode, encoder, max length, format version, back end."""
        ...


class TorchPredictor:
    """A model folder through PyTorch; ``quantize="int8"`` quantizes its linear and LSTM layers dynamically."""

    def __init__(self, model: str | Path, device: str = "auto", quantize: str | None = None) -> None:
        from .classifier import BertLSTMClassifier
        from .model_folder import read_config

        self.clf = BertLSTMClassifier.from_pretrained(model, device=device)
        self.labels = self.clf._require_labels()
        self.quantize = quantize
        self._meta = read_config(model)
        if quantize == "int8":
            self.clf.model = quantize_int8(self.clf._require_model(), self.clf.device)
        elif quantize is not None:
            raise BertLSTMError(f"`quantize` must be int8 or nothing, not {quantize!r}", "quantize")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.quantize is None:
            return self.clf.predict_proba(texts)
        import warnings

        with warnings.catch_warnings():  # torch warns at every quantized pass that torch.ao is moving to torchao
            warnings.simplefilter("ignore")
            return self.clf.predict_proba(texts)

    def metadata(self) -> dict[str, Any]:
        config = self.clf.config
        return {
            "backend": "torch",
            "quantized": self.quantize,
            "format_version": self._meta["format_version"],
            "mode": config.mode,
            "encoder": config.encoder,
            "max_length": config.max_length,
            "labels": self.labels.to_dict(),
        }


def quantize_int8(model: M, device: torch.device) -> M:
    """int8 weights for every ``nn.Linear`` and ``nn.LSTM``, activations quantized on the fly (CPU only)."""
    import warnings

    import torch
    from torch import nn

    if device.type != "cpu":
        raise BertLSTMError("int8 quantization runs on the CPU: use `device` cpu", "device")
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    # One scale per output row of each linear layer: a single scale per tensor cost 2.2 SST-2 dev points.
    spec = {nn.Linear: per_channel_dynamic_qconfig, nn.LSTM: default_dynamic_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao is moving to torchao; it still works
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)  # the same class


class OnnxPredictor:
    """An exported graph (``bertlstm export``) through onnxruntime and ``tokenizers`` alone."""

    def __init__(self, path: str | Path, batch_size: int = 32, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        try:
            import onnxruntime as ort
        except ImportError as err:
            raise missing_package(err, "export") from None

        path = Path(path)
        self.meta = _read_export_metadata(path)
        self.labels = Labels.from_dict(self.meta["labels"], f"{path.with_suffix('.json')}: labels")
        self.tokenizer = Tokenizer.from_file(str(path.with_name(self.meta["tokenizer"])))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(self.meta["max_length"]))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.batch_size, self.pad_id = batch_size, int(self.meta["pad_token_id"])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        logits = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        for rows in sorted_batches([len(row) for row in ids], self.batch_size):
            longest = max(len(ids[i]) for i in rows)
            input_ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.int64)
            for j, i in enumerate(rows):
                input_ids[j, : len(ids[i])], mask[j, : len(ids[i])] = ids[i], 1
            logits[rows] = self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
        return activate(logits, self.labels.multi_label)

    def metadata(self) -> dict[str, Any]:
        keys = ("mode", "encoder", "max_length", "format_version", "quantized", "labels")
        return {"backend": "onnx", **{k: self.meta[k] for k in keys}}


def _read_export_metadata(path: Path) -> dict[str, Any]:
    from .model_folder import file_sha256

    companion = path.with_suffix(".json")
    if path.suffix != ".onnx" or not path.is_file():
        raise BertLSTMError(f"{path} is not an exported .onnx file (bertlstm export writes one)")
    try:
        meta = json.loads(companion.read_text())
    except (OSError, ValueError):
        raise BertLSTMError(f"{companion} is missing or not JSON: export the model again") from None
    if meta.get("format") != "bertlstm-onnx" or not (path.with_name(str(meta.get("tokenizer"))).is_file()):
        raise BertLSTMError(f"{companion} does not describe a bertlstm export with its tokenizer beside it")
    if file_sha256(path) != meta.get("sha256"):
        raise BertLSTMError(f"{path} is damaged: its SHA-256 differs from the one recorded at export")
    return meta


def activate(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Probabilities from logits (N, C): independent sigmoids when multi-label, else a softmax."""
    from scipy.special import expit, softmax

    return (expit(logits) if multi_label else softmax(logits, axis=-1)).astype(np.float32)


def load_predictor(
    model: str | Path, backend: str = "auto", quantize: str | None = None, device: str = "auto"
) -> Predictor:
    """A model folder (torch) or an exported ``.onnx`` file (onnx); ``auto`` tells them apart."""
    is_onnx = Path(model).suffix == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "onnx":
        if not is_onnx:
            raise BertLSTMError(f"the onnx back end runs an exported .onnx file: export {model} first", "backend")
        if quantize:
            raise BertLSTMError("an ONNX graph is quantized when it is exported, not when it is loaded", "quantize")
        return OnnxPredictor(model)
    if backend != "torch":
        raise BertLSTMError(f"`backend` must be auto, torch or onnx, not {backend!r}", "backend")
    if is_onnx:
        raise BertLSTMError(f"{model} is an ONNX graph: use the onnx back end", "backend")
    return TorchPredictor(model, device=device, quantize=quantize)


# --- files ----------------------------------------------------------------------------------------------
def predictions_frame(texts: Sequence[str], proba: np.ndarray, labels: Labels, separator: str = ",") -> pd.DataFrame:
    """One row per text: the text, its label (multi-label: names joined by ``separator``), probabilities."""
    decided = [separator.join(label) if isinstance(label, list) else label for label in labels.decode(proba)]
    frame = pd.DataFrame({"text": list(texts), "label": decided})
    for i, name in enumerate(labels.names):
        frame[f"prob_{name}"] = proba[:, i].round(6)
    return frame


def check_predictions_output(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """A file name predictions may be written to: .csv, .tsv or .jsonl, in an existing folder, not a folder
    itself and never one of the ``inputs`` (that would destroy the true labels)."""
    path = Path(output).expanduser()
    if path.suffix.lower() not in PREDICTION_SUFFIXES:
        raise BertLSTMError(f"predictions output {output}: use a .csv, .tsv or .jsonl file name", "output")
    if path.is_dir():
        raise BertLSTMError(f"predictions output {output} is a folder; name a file", "output")
    for item in inputs:
        source = Path(item).expanduser()
        if source.resolve() == path.resolve() or (source.exists() and path.exists() and source.samefile(path)):
            raise BertLSTMError(f"predictions output {output} is the input file; name another file", "output")
    if not path.parent.is_dir():
        raise BertLSTMError(f"predictions output {output}: folder {path.parent} does not exist", "output")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise BertLSTMError(f"predictions output {output}: cannot write in {path.parent} (permission denied)")
    return path


def write_frames(frames: Iterable[pd.DataFrame], stream: IO[str], kind: str = "csv") -> int:
    """Each frame to ``stream`` as soon as it comes (CSV/TSV with one header, or JSON Lines); rows written."""
    rows = 0
    for frame in frames:
        if kind == "jsonl":
            frame.to_json(stream, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(stream, index=False, header=rows == 0, sep="\t" if kind == "tsv" else ",")
        stream.flush()
        rows += len(frame)
    return rows


def iter_predictions(
    predictor: Predictor, chunks: Iterable[Sequence[str]], separator: str = ",", progress: bool = True
) -> Iterator[pd.DataFrame]:
    """One predictions frame per chunk of texts, with a progress bar (texts done) on a terminal."""
    from tqdm.auto import tqdm

    with tqdm(unit="text", desc="predict", disable=None if progress else True, leave=False) as bar:
        for texts in chunks:
            yield predictions_frame(texts, predictor.predict_proba(texts), predictor.labels, separator)
            bar.update(len(texts))


def predict_file(
    model: str | Path,
    texts: Sequence[str] | None = None,
    input: str | Path | None = None,
    output: str | Path | None = None,
    stream: IO[str] | None = None,
    text_column: str | None = None,
    separator: str = ",",
    backend: str = "auto",
    quantize: str | None = None,
    device: str = "auto",
    chunk_rows: int = 10_000,
) -> int:
    """Label ``texts``, or the texts of the file ``input`` (read ``chunk_rows`` at a time), and write the
    predictions to the file ``output`` (replaced only when complete) or as CSV to ``stream``; returns how many
    texts were labelled. Everything that can be checked is checked before the model is loaded."""
    from .data import file_kind, iter_texts

    path = check_predictions_output(output, [input] if input is not None else []) if output is not None else None
    if input is not None:
        file_kind(input)  # a missing or unreadable input is reported before the model loads
    elif not texts:
        raise BertLSTMError("no texts to label")
    predictor = load_predictor(model, backend, quantize, device)
    chunks: Iterable[Sequence[str]] = iter_texts(input, text_column, chunk_rows) if input is not None else [texts or []]
    frames = iter_predictions(predictor, chunks, separator)
    if path is None:
        return write_frames(frames, stream or _stdout())
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            rows = write_frames(frames, f, path.suffix.lower().lstrip("."))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info(f"wrote {rows} predictions to {path}")
    return rows


def _stdout() -> IO[str]:
    import sys

    return sys.stdout
