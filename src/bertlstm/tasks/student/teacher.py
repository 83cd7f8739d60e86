"""The teacher of a student: found and checked before any work (a classifier's model folder, Hub id or export),
and what the student takes from it: its labels, its tokenizer's files, its word-piece embedding table, and its
logits over the transfer set (:func:`teacher_logits`, kept in the feature cache and resumed after a kill)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.backends import read_export_metadata
from ...core.errors import BertLSTMError
from ...core.hub import local_folder
from ...core.model_folder import CONFIG_NAME, ENCODER_DIR, read_config
from ...core.task import ModelRef
from ...core.word_pieces import TokenizerFiles

EMBEDDING_NAMES = ("word_embeddings.weight", "embed_tokens.weight")  # BERT, RoBERTa, ELECTRA; others


@dataclass
class TeacherRef:
    """A teacher found and checked, nothing loaded: where it is, its metadata (config.json, or an export's
    NAME.json), and whether it is an export."""

    name: str  # as the user gave it
    path: Path  # the model folder, or the export's NAME.onnx
    meta: dict[str, Any]
    export: bool
    _tokenizer: TokenizerFiles | None = field(default=None, repr=False)

    @property
    def files(self) -> list[Path]:
        """What the teacher is made of: a student's output never replaces any of it."""
        if not self.export:
            return [self.path]
        graphs = [self.path.with_name(str(g["file"])) for g in (self.meta.get("graphs") or {}).values()]
        tokenizer = self.path.with_name(str(self.meta["tokenizer"]))
        return [self.path, self.path.with_suffix(".json"), tokenizer, *graphs]

    @property
    def labels(self) -> dict[str, Any]:
        return self.meta["labels"]

    def fingerprint(self) -> str:
        """SHA-256 of the file that records the SHA-256 of every other (config.json, or NAME.json): what keys
        its logits in the cache."""
        recorded = self.path.with_suffix(".json") if self.export else self.path / CONFIG_NAME
        return hashlib.sha256(recorded.read_bytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What a student records of its teacher."""
        settings = self.meta.get("model") or {}
        kind = "export" if self.export else "model folder"
        own = {k: settings[k] for k in ("encoder", "mode", "max_length") if k in settings}
        return {"name": self.name, "kind": kind, "sha256": self.fingerprint(), **own}

    def tokenizer(self) -> TokenizerFiles:
        """The teacher's tokenizer as files: a student reads the same word pieces."""
        if self._tokenizer is None:
            recorded = dict(self.meta.get("special_token_ids") or {})
            if self.export:  # NAME.tokenizer.json, under the name a tokenizer's folder gives it
                folder = Path(tempfile.mkdtemp(prefix="bertlstm-teacher-tokenizer-"))
                (folder / "tokenizer.json").write_bytes(self.path.with_name(self.meta["tokenizer"]).read_bytes())
                recorded["pad"] = self.meta.get("pad_token_id")
            else:
                folder = self.path / ENCODER_DIR
            self._tokenizer = TokenizerFiles.read(folder, recorded)
            if self.export:  # the copy lives as long as the tokenizer that reads it (a student holds it)
                weakref.finalize(self._tokenizer, shutil.rmtree, folder, ignore_errors=True)
        return self._tokenizer

    def embedding_table(self) -> np.ndarray:
        """The teacher encoder's word-piece embeddings (V, H), float32: where a student's embeddings start."""
        size = len(self.tokenizer())
        table = _from_onnx(self.path, size) if self.export else _from_safetensors(self.path / ENCODER_DIR, size)
        if table is None:
            raise BertLSTMError(f"{self.name}: no word-piece embedding table of {size} rows found in its weights")
        return table


def find_teacher(name: str) -> TeacherRef:
    """The teacher ``name`` names, checked to be a classifier (a tagger, a documents model or a student cannot
    teach a student yet): before any work, nothing loaded."""
    if Path(name).suffix == ".onnx":
        path = Path(name).expanduser()
        meta, export = read_export_metadata(path), True
    else:
        path = local_folder(name)
        meta, export = read_config(path), False
    task = meta.get("task") or "classification"
    if task != "classification":
        why = {
            "tagging": "a tagger tags words; a student classifies texts",
            "documents": "a documents model reads windows a student does not",
            "student": "a student cannot teach another yet",
        }.get(task, f"a {task} model is not a classifier")
        raise BertLSTMError(f"`teacher` {name} cannot teach a student: {why}; give a classifier", "teacher")
    return TeacherRef(name, path, meta, export)


def _from_safetensors(folder: Path, size: int) -> np.ndarray | None:
    from safetensors import safe_open  # the weights' own reader: one tensor, not the encoder

    path = folder / "model.safetensors"
    with safe_open(str(path), framework="numpy") as weights:
        names = sorted(weights.keys(), key=lambda n: not n.endswith(EMBEDDING_NAMES))
        for name in names:
            if name.endswith(EMBEDDING_NAMES) or name.endswith("embeddings.weight"):
                table = weights.get_tensor(name)
                if table.ndim == 2 and table.shape[0] >= size:
                    return table.astype(np.float32)
    return None


def _from_onnx(path: Path, size: int) -> np.ndarray | None:
    import onnx  # the export extra: an exported teacher was written with it
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tables = [t for t in graph.initializer if len(t.dims) == 2 and t.dims[0] >= size]
    if tables and not any(t.data_type == onnx.TensorProto.FLOAT for t in tables):  # int8: kept as integers
        raise BertLSTMError(
            f"`teacher` {path}: its word-piece embeddings are quantized (an int8 export), so a student cannot start "
            "from them; give its model folder or an fp32 export",
            "teacher",
        )
    tables = [t for t in tables if t.data_type == onnx.TensorProto.FLOAT]
    tables.sort(key=lambda t: not t.name.endswith(EMBEDDING_NAMES))
    return numpy_helper.to_array(tables[0]).astype(np.float32) if tables else None


def open_teacher(teacher: TeacherRef, device: str = "auto") -> Any:
    """The teacher ready to score texts on its fastest exact engine (an export on onnxruntime; a model folder
    through its cached graph on a CPU, on PyTorch on a GPU)."""
    from ...core.graph_cache import open_predictor  # the teacher's engine: only to score the transfer set
    from ..classify import TASK

    ref = ModelRef(teacher.path, TASK, teacher.meta, "onnx" if teacher.export else "torch")
    return open_predictor(ref, device=device)


def teacher_logits(
    teacher: TeacherRef, predictor: Any, texts: Sequence[str], cache: Any, batch_size: int, what: str
) -> np.ndarray:
    """The teacher's logits (N, C) for ``texts``, through ``predictor`` (the teacher on its fastest exact
    engine), from the feature cache (``cache``, a :class:`~bertlstm.core.feature_cache.FeatureCache`; None: not
    kept) when an earlier student had them computed: keyed by the teacher's checksums, its engine's precision
    and the texts, and resumed where a killed pass stopped."""
    import torch  # the cache's batches are tensors, and it stores them: only to score

    from ...core.feature_cache import CacheKey, texts_fingerprint  # torch, as above

    settings = teacher.meta.get("model") or {}
    engine, classes = predictor.engine, len(predictor.labels)
    key = CacheKey(
        encoder=f"teacher {teacher.name}",
        encoder_hash=teacher.fingerprint(),
        layers="logits",
        max_length=int(settings.get("max_length", 0)),
        pooling="logits",
        dtype="float32",
        texts_hash=texts_fingerprint(texts),
        n_texts=len(texts),
        quantized=getattr(engine, "quantized", None),  # an int8 teacher's logits are not the exact ones
    )

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, 1, C)
        return torch.from_numpy(engine({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})).unsqueeze(1)

    if cache is None:  # the cache turned off: scored now, kept nowhere
        return np.asarray(predictor.logits(list(texts)), dtype=np.float32)
    store = cache.open(key)
    if store is None:
        ids = predictor.cut(predictor.tokenizer, list(texts))
        store = cache.build(key, encode, classes, ids, predictor.pad_id, batch_size, what=what)
    return np.stack([store[i][0] for i in range(len(texts))]).astype(np.float32)
