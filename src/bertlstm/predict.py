"""Using a trained model: logits over a dataset in length-sorted batches, and the prediction back ends.

A back end is anything with ``labels`` and ``predict_proba(texts)``: :class:`TorchPredictor` (a model folder,
optionally with its linear and LSTM layers quantized to int8) or :class:`OnnxPredictor` (an exported graph,
run by onnxruntime with the ``tokenizers`` library: no torch, no transformers). :mod:`bertlstm.batch` runs
files through one. Nothing here imports the training loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .data import sorted_batches
from .distributed import Shard, gather_rows
from .errors import BertLSTMError, missing_package
from .labels import Labels

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
M = TypeVar("M", bound="torch.nn.Module")


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


class RowsView:
    """Some rows of a dataset (``lengths``, items and ``collate``), as :func:`predict_logits` reads them."""

    def __init__(self, dataset: Any, rows: Sequence[int]) -> None:
        self.dataset, self.rows = dataset, list(rows)
        lengths = dataset.lengths
        self.lengths = [lengths[i] for i in self.rows]
        self.collate = dataset.collate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.rows[i]]


def sharded_logits(
    model: Any, dataset: Any, batch_size: int, device: torch.device, shard: Shard, predict: Any = predict_logits
) -> np.ndarray:
    """:func:`predict_logits` (or another ``predict`` of the same form) with the work shared among
    processes: each takes a stride of the length-sorted rows, and every process gets all the outputs back,
    in dataset order (no row twice, none left out)."""
    if shard.world == 1:
        return predict(model, dataset, batch_size, device)
    lengths = dataset.lengths
    rows = shard.rows(sorted(range(len(dataset)), key=lambda i: -lengths[i]))
    local = predict(model, RowsView(dataset, rows), batch_size, device)
    return gather_rows(shard, rows, local, len(dataset))


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

    def __init__(
        self, model: str | Path, device: str = "auto", quantize: str | None = None, batch_size: int | None = None
    ) -> None:
        from .classifier import BertLSTMClassifier
        from .model_folder import read_config

        self.clf = BertLSTMClassifier.from_pretrained(model, device=device)
        self.clf.predict_batch_size_ = batch_size  # None: the classifier's own choice
        self.labels = self.clf.labels_
        self.quantize = quantize
        self._meta = read_config(model)
        if quantize == "int8":
            self.clf.model_ = quantize_int8(self.clf.model_, self.clf.device_)
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
        config = self.clf.model_.config
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
    model: str | Path,
    backend: str = "auto",
    quantize: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
) -> Predictor:
    """A model folder or Hub repository (torch), or an exported ``.onnx`` file (onnx); ``auto`` tells them
    apart. ``batch_size``: texts per forward pass (default: 32 on a CPU). A tagger's back end has
    ``task = "tagging"`` and ``predict_spans(texts)`` in place of ``labels`` and ``predict_proba``."""
    is_onnx = Path(model).suffix == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "onnx":
        if not is_onnx:
            raise BertLSTMError(f"the onnx back end runs an exported .onnx file: export {model} first", "backend")
        if quantize:
            raise BertLSTMError("an ONNX graph is quantized when it is exported, not when it is loaded", "quantize")
        meta = _read_export_metadata(Path(model))
        if meta.get("task") == "tagging":
            from .tagger import OnnxTagger

            return OnnxTagger(model, meta, batch_size=batch_size or 32)  # type: ignore[return-value]
        return OnnxPredictor(model, batch_size=batch_size or 32)
    if backend != "torch":
        raise BertLSTMError(f"`backend` must be auto, torch or onnx, not {backend!r}", "backend")
    if is_onnx:
        raise BertLSTMError(f"{model} is an ONNX graph: use the onnx back end", "backend")
    from .model_folder import task_of

    if task_of(model) == "tagging":
        from .tagger import TorchTagger

        return TorchTagger(model, device=device, quantize=quantize, batch_size=batch_size)  # type: ignore[return-value]
    return TorchPredictor(model, device=device, quantize=quantize, batch_size=batch_size)
