"""A trained model as ONNX graphs, checked, with what a consumer needs beside them — for any task.

The task gives the graphs (:meth:`export_graphs` of its estimator: the model with a
:class:`~bertlstm.core.masked_lstm.MaskedLSTM`, exact on padded batches, since packing does not export).
Before anything is written, each graph is checked against the PyTorch model (within 1e-5) and the ONNX file
against PyTorch (within 1e-4) on three batches that vary every dynamic axis: the one it was exported on, fewer
and shorter texts, and one text alone.

Beside ``NAME.onnx`` go ``NAME.tokenizer.json`` (the model's tokenizer) and ``NAME.json`` (the task, the model
settings, labels, inputs, outputs, special token ids, and the checksums of the graphs and the tokenizer), and
each graph carries the checksum of that metadata: onnxruntime and ``tokenizers`` alone can serve it, the task's
predictor does exactly that, and a file changed or taken from another export is refused. ``bertlstm export``
(:mod:`bertlstm.deploy.export`) and the cache of graphs (:mod:`bertlstm.core.graph_cache`) write through here.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import EXPORT_FORMAT, STAMP, is_export, metadata_digest, plain_tokenizer
from .errors import BertLSTMError, first_line
from .export_graph import ExportGraph
from .folders import atomic_file, scratch_folder
from .masked_lstm import LSTM_LAYER
from .model_folder import file_sha256
from .progress import Progress

logger = logging.getLogger(__name__)
OPSET = 18
SAMPLE = [  # texts of different lengths: the check runs them padded in one batch
    "good",
    "the plot was dull and far too long, but the actors were wonderful",
    "not bad at all",
    "an utterly forgettable film that nobody will remember next year, which is a shame given its cast",
]


def export_estimator(
    estimator: Any, path: Path, quantize: str | None, source: str, overwrite: bool = False, fuse: bool = False
) -> None:
    """A trained estimator's graphs to ``path`` (checked by the caller) and beside it; ``source``: the SHA-256
    of the model folder's config.json, recorded in the metadata; ``fuse``: with onnxruntime's own transformer
    fusions where they apply (:mod:`bertlstm.core.onnx_fusion`: for onnxruntime only)."""
    graphs = estimator.export_graphs()
    _check_extra(path, [_graph_file(path, g) for g in graphs[1:]], overwrite)
    stages = len(graphs) * (3 if quantize else 2)
    with scratch_folder(path) as tmp:  # a killed export's leftovers go at the next one
        with Progress("export", total=stages, unit="stage") as step:
            written = [_export_checked(graph, tmp, quantize, step, fuse) for graph in graphs]
        _write_beside(estimator, graphs, written, path, quantize, source, tmp)


def _check_extra(path: Path, extra: list[Path], overwrite: bool) -> None:
    """The export's other graphs (``NAME.windows.onnx``) replace only an earlier export's, with ``overwrite``."""
    existing = [f for f in extra if f.exists() or f.is_symlink()]
    if not existing:
        return
    ours = {str(g.get("file")) for g in (_earlier(path).get("graphs") or {}).values()}
    foreign = [f for f in existing if f.name not in ours or f.is_symlink()]
    if foreign:
        raise BertLSTMError(
            f"export would replace {', '.join(map(str, foreign))}, which bertlstm did not write: name another file",
            "output",
        )
    if not overwrite:
        raise BertLSTMError(
            f"export would replace {', '.join(map(str, existing))}; allow it (`overwrite`)", "overwrite"
        )


def _earlier(path: Path) -> dict[str, Any]:
    """The metadata of an earlier export at ``path``, or nothing."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) if is_export(path) else {}
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _export_checked(graph: ExportGraph, tmp: Path, quantize: str | None, step: Progress, fuse: bool) -> Path:
    """One graph exported into ``tmp``, checked against the PyTorch model (1e-5) and in onnxruntime (1e-4) on
    three batches that vary its axes; optionally fused (where the fused graph passes the check) and quantized.
    The file written; ``step`` counts the stages done (export, check, quantize)."""
    assert graph.sample is not None and graph.reference is not None
    # exported on the first batch; checked on it, on fewer and shorter texts, and on one text alone (axes at 1)
    samples = [graph.sample(texts) for texts in (SAMPLE, SAMPLE[:3], SAMPLE[2:3])]
    inputs = samples[0]
    _check_close(_torch_run(graph, inputs), graph.reference(inputs), graph, inputs, 1e-5, "the exported module")
    plain = tmp / f"{graph.name}.fp32.onnx"
    _torch_export(graph, inputs, plain)
    _declare_shapes(plain, graph)
    step.update()
    fp32 = _fused_checked(graph, plain, tmp / f"{graph.name}.fused.onnx", samples) if fuse else None
    if fp32 is None:
        _check_onnx(plain, graph, samples)
        fp32 = plain
    step.update()
    if quantize != "int8":
        return fp32
    written = tmp / f"{graph.name}.int8.onnx"
    _quantize(fp32, written)
    step.update()
    drift = float(np.abs(_onnx_run(_session(written), graph, inputs) - _torch_run(graph, inputs)).max())
    logger.info(f"int8 {graph.name} graph: largest output change on the check sample {drift:.4f}")
    return written


def _check_onnx(path: Path, graph: ExportGraph, samples: list[dict[str, np.ndarray]]) -> None:
    """The graph at ``path`` in onnxruntime against the PyTorch module, within 1e-4, on every sample batch."""
    session = _session(path)  # made once: a session of the default encoder's graph takes a second
    for sample in samples:
        _check_close(_onnx_run(session, graph, sample), _torch_run(graph, sample), graph, sample, 1e-4, "onnxruntime")


def _fused_checked(graph: ExportGraph, source: Path, target: Path, samples: list[dict[str, np.ndarray]]) -> Path | None:
    """``source`` with onnxruntime's transformer fusions, for the one transformers encoder of ``graph``'s module
    (its heads and width), written to ``target`` and checked as the plain graph is; None where there is no such
    encoder, the fusions do not apply, or the fused graph fails (the fusions only make it faster)."""
    from .onnx_fusion import fuse_graph  # onnxruntime's tooling: only for the cache's graphs

    configs = [model.config for model in _transformers_models(graph.module)]
    if len(configs) != 1 or not hasattr(configs[0], "num_attention_heads"):
        return None
    try:
        if not fuse_graph(source, target, int(configs[0].num_attention_heads), int(configs[0].hidden_size)):
            return None
        _check_onnx(target, graph, samples)
    except Exception as err:  # noqa: BLE001  whatever fails, the plain graph is there, checked next
        logger.info(f"onnxruntime's fusions are not used for this graph: {first_line(err)}")
        return None
    return target


def _transformers_models(module: torch.nn.Module) -> list[Any]:
    """The transformers models (encoders) inside ``module``, told by their attention setting."""
    return [m for m in module.modules() if callable(getattr(m, "set_attn_implementation", None))]


def _graph_file(path: Path, graph: ExportGraph) -> Path:
    return path.with_name(f"{path.stem}{graph.file}.onnx")


def _torch_run(graph: ExportGraph, batch: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return graph.module(*(torch.from_numpy(batch[name]) for name in graph.inputs)).numpy()


def _session(path: Path) -> Any:
    import onnxruntime as ort  # the export extra, checked above

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _onnx_run(session: Any, graph: ExportGraph, batch: dict[str, np.ndarray]) -> np.ndarray:
    return session.run([graph.output], {name: batch[name] for name in graph.inputs})[0]


def _check_close(
    got: np.ndarray, want: np.ndarray, graph: ExportGraph, batch: dict[str, np.ndarray], tolerance: float, what: str
) -> None:
    """``got`` within ``tolerance`` of ``want`` at every real output position (padding positions may differ)."""
    real = graph.real(batch) if graph.real is not None else slice(None)
    gap = float(np.abs(got[real] - want[real]).max())
    if not gap <= tolerance:
        raise BertLSTMError(f"export check failed: {what} gives outputs {gap:.2e} away from PyTorch's (> {tolerance})")


def _torch_export(graph: ExportGraph, batch: dict[str, np.ndarray], path: Path) -> None:
    """The dynamo exporter (the TorchScript one gives wrong attention for transformers 5 BERTs)."""
    dims = {name: torch.export.Dim(name) for axes in graph.dynamic.values() for name in axes.values()}
    dynamic = tuple({axis: dims[name] for axis, name in graph.dynamic[i].items()} for i in graph.inputs)
    inputs = tuple(torch.from_numpy(batch[name]) for name in graph.inputs)
    with torch.no_grad(), warnings.catch_warnings(), _quiet_logger("torch.onnx"), _eager_attention(graph.module):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals are not the user's business
        torch.onnx.export(
            graph.module,
            inputs,
            str(path),
            input_names=list(graph.inputs),
            output_names=[graph.output],
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            custom_translation_table={LSTM_LAYER: _onnx_lstm_layer},
            external_data=False,  # one self-contained file
            verbose=False,
        )


def _onnx_lstm_layer(x: Any, lengths: Any, w: Any, r: Any, b: Any) -> tuple[Any, Any]:
    """``bertlstm::lstm_layer`` (:mod:`bertlstm.core.masked_lstm`) as ONNX's ``LSTM``, which reads each row's
    length: (B, T, I), (B,) -> (B, T, D*U), (D, B, U)."""
    from onnxscript import opset18  # the exporter's own dependency; opset 18 = OPSET

    op: Any = opset18  # its typing of operators' inputs is stricter than the exporter's values can say

    directions, units = w.shape[0], r.shape[2]  # the weights' sizes are fixed in the graph
    y, h_n, _ = op.LSTM(
        op.Transpose(x, perm=[1, 0, 2]),  # (T, B, I)
        w,
        r,
        b,
        op.Cast(lengths, to=6),  # int32, as sequence_lens must be
        hidden_size=units,
        direction="bidirectional" if directions == 2 else "forward",
    )  # y (T, D, B, U), h_n (D, B, U)
    rows_steps = op.Concat(op.Shape(x, start=0, end=2), op.Constant(value_ints=[-1]), axis=0)  # [B, T, -1]
    return op.Reshape(op.Transpose(y, perm=[2, 0, 1, 3]), rows_steps), h_n  # (B, T, D*U), (D, B, U)


@contextmanager
def _eager_attention(module: torch.nn.Module) -> Iterator[None]:
    """Every transformers model in ``module`` exported with its attention in plain operators ("eager") rather
    than SDPA, whose export guards each layer against fully masked rows (IsNaN, Where): onnxruntime runs the
    plain graph about 7-10% faster (BENCHMARKS.md, issue #33). The module is put back as it was: the export is
    checked against it."""
    models = _transformers_models(module)
    before = [m.config._attn_implementation for m in models]
    for model in models:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        for model, implementation in zip(models, before, strict=True):
            model.set_attn_implementation(implementation)


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """The logger ``name`` at errors only, for the duration ("torchvision is not installed. Skipping ...")."""
    logger, level = logging.getLogger(name), logging.getLogger(name).level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _declare_shapes(path: Path, graph: ExportGraph) -> None:
    """Repair what the exporter declares when it fixes a dynamic output axis at the check sample's size: it
    writes the LSTM's time axis, and what follows it, with that size (a tagger's emissions as (sentences, 18,
    tags)), and onnxruntime then warns at every run whose sentences have other lengths. The output gets its axes
    by name, and the intermediate annotations go (onnxruntime infers them itself). A graph whose output is
    right (a classifier's) is left as the exporter wrote it."""
    import onnx  # the export extra, checked above

    model = onnx.load(str(path))
    dynamic = {name for axes in graph.dynamic.values() for name in axes.values()}
    dims = model.graph.output[0].type.tensor_type.shape.dim
    wrong = [(dim, name) for dim, name in zip(dims, graph.output_axes, strict=True) if name in dynamic]
    wrong = [(dim, name) for dim, name in wrong if not dim.dim_param]
    if not wrong:
        return
    for dim, name in wrong:
        dim.dim_param = name  # replaces the fixed dim_value
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def _quantize(source: Path, target: Path) -> None:
    """onnxruntime's own tooling: its pre-processing (shape inference, graph optimization), then dynamic
    quantization: int8 weights, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # the export extra, only for int8
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name("prepared.onnx")
    # Symbolic shape inference cannot follow the LSTM's dynamic time axis; ONNX's own shape inference can.
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    # One scale per weight column (a single one per tensor cost 1.7 SST-2 dev points); 7-bit weights leave
    # headroom on CPUs without VNNI, where 8-bit products can saturate.
    quantize_dynamic(
        str(prepared),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        nodes_to_exclude=_half_lookups(prepared),
    )


def _half_lookups(path: Path) -> list[str]:
    """The graph's look-ups (Gather) in a float16 table, such as a student's frozen word pieces: the quantizer
    would give them float16 scales, which onnxruntime refuses; they stay as they are (exact, half the bytes)."""
    import onnx  # the exporter's own dependency

    graph = onnx.load(str(path), load_external_data=False).graph
    halves = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    return [node.name for node in graph.node if node.op_type == "Gather" and node.input[0] in halves]


def metadata(
    estimator: Any, graphs: list[ExportGraph], path: Path, quantize: str | None, source: str, tokenizer_sha256: str
) -> dict[str, Any]:
    """``NAME.json`` but the graphs' checksums: what a predictor needs beside the graphs (the estimator's
    description), the main graph's inputs and output, the tokenizer's checksum and the SHA-256 of the model
    folder's config.json it came from (``source``)."""
    described, main = estimator.describe(), graphs[0]
    sample = main.sample(SAMPLE[:1]) if main.sample is not None else {}
    axes = {name: ", ".join(main.dynamic[name][axis] for axis in sorted(main.dynamic[name])) for name in main.inputs}
    return {
        "format": "bertlstm-onnx",
        **described,
        "format_version": EXPORT_FORMAT,
        "bertlstm_version": version("bertlstm"),
        "inputs": {name: f"{sample[name].dtype if name in sample else 'int64'} ({axes[name]})" for name in main.inputs},
        "outputs": {main.output: f"float32 ({', '.join(main.output_axes)})"},
        **{k: described["model"][k] for k in ("max_length", "mode", "encoder") if k in described["model"]},  # earlier
        "quantized": quantize,
        "opset": OPSET,
        "tokenizer": f"{path.stem}.tokenizer.json",
        "tokenizer_sha256": tokenizer_sha256,
        "source": {"config_sha256": source},
    }


def _stamp(graph_file: Path, digest: str) -> None:
    """Write the metadata's checksum into the graph (its ``metadata_props``, which onnxruntime reads back)."""
    import onnx  # the export extra, checked above

    model = onnx.load(str(graph_file))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = STAMP, digest
    onnx.save(model, str(graph_file))


def _write_beside(
    estimator: Any,
    graphs: list[ExportGraph],
    written: list[Path],
    path: Path,
    quantize: str | None,
    source: str,
    tmp: Path,
) -> None:
    """The tokenizer, the metadata and any other graph, each renamed into place, then the main graph: a
    complete ``NAME.onnx`` means its companions are there. Each graph carries the metadata's checksum, and the
    metadata each graph's."""
    truncate_at = estimator.predictor_class.truncation(estimator.describe())
    tokenizer = tmp / "tokenizer.json"
    plain_tokenizer(estimator.tokenizer_, truncate_at).save(str(tokenizer))
    meta = metadata(estimator, graphs, path, quantize, source, file_sha256(tokenizer))
    digest = metadata_digest(meta)
    for file in written:
        _stamp(file, digest)
    pairs = list(zip(graphs, written, strict=True))
    meta["sha256"] = file_sha256(written[0])
    if len(pairs) > 1:
        meta["graphs"] = {g.name: {"file": _graph_file(path, g).name, "sha256": file_sha256(f)} for g, f in pairs[1:]}
    with atomic_file(path.with_name(f"{path.stem}.tokenizer.json")) as target:
        shutil.copyfile(tokenizer, target)
    with atomic_file(path.with_name(f"{path.stem}.json")) as target:
        target.write_text(json.dumps(meta, indent=2) + "\n")
    for graph, file in [*pairs[1:], pairs[0]]:
        with atomic_file(_graph_file(path, graph)) as target:
            shutil.copyfile(file, target)
