"""Which engine runs a model folder for ``predict``, ``evaluate`` and ``serve``: the fastest exact one at hand.

On a CPU, onnxruntime runs this project's graphs about as fast as PyTorch or faster (1.03x to 1.7x on the AMD
EPYC of BENCHMARKS.md, sittings apart; 0.99x on its Intel Xeon, with onnxruntime's own fusions of attention,
GELU and layer norms, :mod:`bertlstm.core.onnx_fusion`, which only the cache's graphs get), with the same
probabilities (within 1e-4: every graph is checked against PyTorch before it is written, and the tests check a
folder's predictions both ways), and without importing torch or transformers: 5 s of a short command's 6. So
with ``backend`` auto a model folder runs on onnxruntime through its graph in a cache of graphs, when:

* onnxruntime is installed (and, to export the graph, onnxscript);
* the run is on a CPU: ``device`` cpu, or auto on a machine without CUDA;
* nothing asks for PyTorch: no ``quantize`` int8 (PyTorch's int8 weights), no ``precision`` bf16, no
  explanation by gradients, a single process (``torchrun`` shares the work among GPUs);
* ``$BERTLSTM_BACKEND`` is not ``torch`` (which pins PyTorch whatever the above).

Otherwise the folder runs on PyTorch, as with ``backend`` torch. ``backend`` onnx runs a folder through its
cached graph whatever the device.

``precision`` says what the model computes in (:func:`chosen_precision`): fp32 (the default: exact); int8, the
folder's graph quantized by onnxruntime (cached apart from the fp32 one), or PyTorch's int8 weights where the
folder runs on PyTorch; bf16, PyTorch under bf16 autocast, only where the hardware computes in bf16; auto, the
fastest the machine computes natively, as ``feature_pass`` auto chooses (bf16, else int8 on a CPU with VNNI or
AMX, else fp32). Lower precisions move answers a little (BENCHMARKS.md): fp32 stays the default.

The graph is exported once (``bertlstm train`` does it as it saves the model, :func:`prepare_graph`); a folder
that has none yet (copied, or from the Hub) is exported when it is opened, or with ``wait`` False answers
on PyTorch first and is exported afterwards (:func:`finish`), so that a first answer never waits for it.

A cached graph is a pure function of its model folder, checked at every use (:func:`graph_predictor`): the
folder's files against its config.json; the graph's files against their SHA-256 in its metadata; the metadata
and tokenizer against the checksum each graph carries; and the metadata's record of the config.json it was
exported from against the folder's. What fails is logged in one line and exported again, never used. What
decides an answer — the settings, labels and thresholds, special tokens and tokenizer — is read from the
folder, not from the cache. The cache is ``$BERTLSTM_GRAPHS``, else ``$XDG_CACHE_HOME/bertlstm/graphs``, else
``~/.cache/bertlstm/graphs``: one folder per model, named by the SHA-256 of its ``config.json``; the 8 most
recently used are kept.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .backends import EXPORT_FORMAT, DamagedExport, Predictor, read_export_metadata
from .errors import BertLSTMError, first_line
from .folders import CONFIG_NAME, TAG_NAME, atomic_folder, default_graph_dir, is_held, tag_cache
from .model_folder import check_files, file_sha256, tokenizer_file
from .task import ModelRef

logger = logging.getLogger(__name__)
GRAPH = "model.onnx"  # in each model's folder of the cache, with model.json and model.tokenizer.json
KEEP = 8  # graphs kept in the cache: the most recently used
GRAPHS_TAG = "bertlstm's cache of ONNX graphs, one folder per model folder"  # its CACHEDIR.TAG says so
_KEY = re.compile(r"[0-9a-f]{32}")  # an entry's name (:func:`_entry`)
# How this version builds its graphs, in each entry's name: a graph built before a change is built again.
# 2: each LSTM layer as one ONNX LSTM node that reads the rows' lengths (was a masked formulation).
# 3: attention exported in plain operators, not SDPA's (onnx_export._eager_attention), and fused by onnxruntime's
# transformer fusions (core.onnx_fusion).
GRAPHS_BUILT = 3
_UNFINISHED = re.compile(r"\.[0-9a-f]{32}\.(tmp|old)-.+")  # an export's temporary folder (live or killed)


def open_predictor(
    ref: ModelRef,
    backend: str = "auto",
    quantize: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    gradients: bool = False,
    world: int = 1,
    wait: bool = True,
    precision: str = "fp32",
) -> Predictor:
    """``ref`` ready to predict in ``precision`` on the engine chosen as the module says (``gradients``: an
    explanation will follow them; ``world``: the processes sharing the work). A folder whose graph is not
    exported yet is exported first, or with ``wait`` False answers on PyTorch and is exported by :func:`finish`."""
    precision = chosen_precision(ref, precision, quantize, backend, device)
    quantized = "int8" if precision == "int8" else None  # the graph's
    if ref.backend == "torch" and backend == "onnx":
        return graph_predictor(ref, batch_size, quantize=quantized)
    if ref.backend == "torch" and precision != "bf16" and runs_on_onnx(backend, quantize, device, gradients, world):
        if not wait and not has_graph(ref, quantize=quantized):
            logger.info(f"{ref.path} answers on PyTorch this time; its graph for onnxruntime is exported after")
            predictor = ref.predictor(precision, device, batch_size)
            predictor.graph_due = True
            return predictor
        try:
            return graph_predictor(ref, batch_size, quantize=quantized)
        except ExportFailed as err:  # auto: the model as it is, on PyTorch
            logger.warning(f"{ref.path} runs on PyTorch: {err}")
    return ref.predictor(precision, device, batch_size)


PRECISIONS = ("fp32", "int8", "bf16", "auto")


def chosen_precision(ref: ModelRef, precision: str, quantize: str | None, backend: str, device: str) -> str:
    """What ``ref`` computes in (fp32, int8 or bf16), from ``precision`` and ``quantize`` (int8: PyTorch's int8
    weights, the older way to ask for int8); auto resolved for ``device`` and logged. An export runs in the
    precision it was exported in."""
    if precision not in PRECISIONS:
        raise BertLSTMError(f"`precision` must be one of {', '.join(PRECISIONS)}, not {precision!r}", "precision")
    if quantize:
        if ref.backend == "onnx" or backend == "onnx":
            raise BertLSTMError("an ONNX graph is quantized when it is exported, not when it is loaded", "quantize")
        if precision not in ("fp32", "int8"):
            raise BertLSTMError(f"`quantize` int8 and `precision` {precision} disagree: give one", "quantize")
        return "int8"
    if ref.backend == "onnx":
        own = ref.meta.get("quantized") or "fp32"
        if precision in ("int8", "bf16") and precision != own:
            raise BertLSTMError(
                f"{ref.path} was exported in {own}, and an export runs in the precision it was exported in "
                "(`quantize` int8 at export writes an int8 one); for another, use the model folder",
                "precision",
            )
        return own
    if precision in ("fp32", "int8"):
        return precision
    from .device import resolve_device  # torch: only bf16 and auto ask the hardware
    from .feature_cache import machine_pass
    from .torch_engine import require_bf16

    if precision == "bf16":  # refused before the model is loaded
        require_bf16(resolve_device(device))
        return precision
    chosen, why = machine_pass("auto", resolve_device(device))
    logger.info(f"precision {chosen} ({why})")
    return chosen


def finish(ref: ModelRef, predictor: Predictor) -> None:
    """After a command's answers: export the graph that a predictor opened with ``wait`` False went without,
    so that the next run starts on it (a failure is remembered, and the model stays on PyTorch)."""
    if not predictor.graph_due:
        return
    predictor.graph_due = False
    try:
        cached_graph(ref, quantize=predictor.engine.quantized)
    except ExportFailed as err:
        logger.warning(f"{ref.path} stays on PyTorch: {err}")


class ExportFailed(BertLSTMError):
    """A model folder whose graph could not be exported (remembered in the cache: not tried again)."""


def runs_on_onnx(backend: str, quantize: str | None, device: str, gradients: bool, world: int) -> bool:
    """Whether ``backend`` auto runs a model folder on onnxruntime (see the module)."""
    if backend != "auto" or quantize or gradients or world > 1 or os.environ.get("BERTLSTM_BACKEND") == "torch":
        return False
    if not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript")):
        return False
    return device == "cpu" or (device == "auto" and not _cuda())


def _cuda() -> bool:
    """Whether PyTorch sees a CUDA device: never with a CPU build of torch (told by its version, no import)."""
    try:
        if "+cpu" in importlib.metadata.version("torch"):
            return False
    except importlib.metadata.PackageNotFoundError:
        return False
    import torch  # a CUDA build: ask it

    return torch.cuda.is_available()


# --- the cache of graphs ---------------------------------------------------------------------------------
def _entry(ref: ModelRef, root: Path | None, quantize: str | None = None) -> Path:
    """Where the folder's graph goes in the cache: named by its config.json (which records the SHA-256 of every
    weight and tokenizer file), the export format, how graphs are built and their quantization."""
    made = f"{EXPORT_FORMAT}.{GRAPHS_BUILT}{f'.{quantize}' if quantize else ''}".encode()
    key = hashlib.sha256((ref.path / CONFIG_NAME).read_bytes() + made).hexdigest()[:32]
    return (root or default_graph_dir()) / key


def has_graph(ref: ModelRef, root: Path | None = None, quantize: str | None = None) -> bool:
    """Whether the folder's graph (``quantize`` int8: its int8 graph) is in the cache (not yet checked:
    :func:`graph_predictor` does)."""
    return (_entry(ref, root, quantize) / GRAPH).is_file()


def graph_predictor(
    ref: ModelRef, batch_size: int | None = None, root: Path | None = None, quantize: str | None = None
) -> Predictor:
    """The model folder on onnxruntime through its cached graph (``quantize`` int8: quantized by onnxruntime),
    checked (see the module); a graph that fails a check is logged, removed and exported again."""
    for attempt in (1, 2):
        graph = cached_graph(ref, root, quantize)
        try:
            return _open_graph(ref, graph, batch_size)
        except DamagedExport as err:
            if attempt == 2:
                raise
            logger.warning(f"the cached graph of {ref.path} is not used ({err}); exporting it again")
            shutil.rmtree(graph.parent, ignore_errors=True)
    raise AssertionError("unreachable")


def _open_graph(ref: ModelRef, graph: Path, batch_size: int | None) -> Predictor:
    """The graph with the metadata it was exported with (every checksum checked) and what decides an answer
    from the folder: the settings, labels, special tokens and tokenizer."""
    exported = read_export_metadata(graph)
    source = (exported.get("source") or {}).get("config_sha256")
    if source != file_sha256(ref.path / CONFIG_NAME):
        raise DamagedExport(f"{graph.parent.name} was exported from another model folder")
    task = ref.task
    settings = task.config.from_dict(ref.meta["model"], f"{ref.path / CONFIG_NAME}: model: ").to_dict()
    folder = {
        "task": task.name,
        "model": settings,
        "labels": ref.meta["labels"],
        "format_version": ref.meta["format_version"],  # the model folder's (its graph's is checked above)
    }
    recorded = ref.meta.get("special_token_ids")  # a folder saved since they were recorded
    if isinstance(recorded, dict):
        folder["special_token_ids"] = {k: v for k, v in recorded.items() if k != "pad"}
        folder["pad_token_id"] = recorded["pad"]
    meta = {**exported, **folder, "tokenizer": str(tokenizer_file(ref.path).resolve())}
    logger.info(f"loading the {task.name} model {ref.path} on onnxruntime ...")
    logger.debug(f"{ref.path} runs on its cached ONNX graph {graph}")
    return task.predictor().from_export(graph, meta, batch_size, stamped=exported)


def cached_graph(ref: ModelRef, root: Path | None = None, quantize: str | None = None) -> Path:
    """The model folder's ONNX graph (``quantize`` int8: quantized) in the cache (``root``, else
    :func:`default_graph_dir`), the folder's files verified; exported there first if it is not yet (once per
    model: a process that finds another's finished graph uses it)."""
    check_files(ref.path, ref.meta)  # the folder's weights and tokenizer, as recorded in its config.json
    final = _entry(ref, root, quantize)
    if (final / GRAPH).is_file():
        with suppress(OSError):  # used now: the last to be evicted (a read-only cache is used as it is)
            os.utime(final)
        return final / GRAPH
    failed = _failure(final)
    if failed is not None:
        raise ExportFailed(f"its export failed before ({failed}); `bertlstm cache clear` forgets it")
    what = f"an {quantize} ONNX graph" if quantize else "an ONNX graph"
    logger.info(f"exporting {ref.path} to {what} for onnxruntime, once (into {final.parent}) ...")
    start = time.perf_counter()
    estimator = ref.estimator(device="cpu")
    _export_into(final, estimator, file_sha256(ref.path / CONFIG_NAME), quantize)
    logger.info(f"exported in {time.perf_counter() - start:.1f}s; later runs of this model start from it")
    return final / GRAPH


def prepare_graph(ref: ModelRef, estimator: Any, world: int = 1) -> None:
    """Export a model folder just saved (``ref``) from ``estimator`` (the model in memory) into the graph cache,
    where the default engine would run it (``world``: the processes of the run): its first ``predict`` then
    starts on onnxruntime at once."""
    if not runs_on_onnx("auto", None, str(estimator.device_), False, world) or has_graph(ref):
        return
    logger.info("exporting the model's graph for onnxruntime, so that predict starts at once ...")
    start = time.perf_counter()
    try:
        _export_into(_entry(ref, None), estimator, file_sha256(ref.path / CONFIG_NAME))
    except ExportFailed as err:
        logger.warning(f"{ref.path} will run on PyTorch: {err}")
        return
    logger.info(f"exported in {time.perf_counter() - start:.1f}s")


def _export_into(final: Path, estimator: Any, source: str, quantize: str | None = None) -> None:
    """Export ``estimator`` (``quantize`` int8: quantized) into the cache entry ``final``, whole or not at all; a
    failure is remembered."""
    from .onnx_export import export_estimator  # torch and the ONNX exporter: only to export

    export_log = logging.getLogger("bertlstm.core.onnx_export")
    level = export_log.level
    export_log.setLevel(logging.WARNING)  # its temporary paths are not the user's business
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tag_cache(final.parent, GRAPHS_TAG)
        with atomic_folder(final, replace=False) as tmp:  # another process may finish the same graph first
            export_estimator(estimator, tmp / GRAPH, quantize, source, fuse=True)
    except OSError as err:  # a cache it cannot write (read-only, full): PyTorch this time, tried again next time
        raise ExportFailed(f"the graph cache {final.parent} cannot be written ({first_line(err)})") from None
    except Exception as err:  # noqa: BLE001  an encoder the exporter cannot take: remembered, not retried
        why = first_line(err)
        with suppress(OSError):
            final.with_name(f"{final.name}.failed").write_text(f"{importlib.metadata.version('bertlstm')}\t{why}\n")
        raise ExportFailed(f"its export to ONNX failed ({why})") from None
    finally:
        export_log.setLevel(level)
    with suppress(OSError):  # another process may be evicting or clearing at the same time
        evict(final.parent, KEEP)


def _failure(final: Path) -> str | None:
    """Why the export of the graph ``final`` failed before, as this bertlstm remembers it (one by another
    version is tried again: it may export now)."""
    try:
        made_by, _, why = final.with_name(f"{final.name}.failed").read_text().strip().partition("\t")
    except OSError:
        return None
    return why if made_by == importlib.metadata.version("bertlstm") else None


def evict(root: Path, keep: int) -> None:
    """Only the ``keep`` most recently used graphs stay (a model trained again is a new graph; each is the size
    of its weights)."""
    graphs = sorted(graph_folders(root), key=lambda p: p.stat().st_mtime)
    for old in graphs[: max(0, len(graphs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
        logger.debug(f"removed the cached graph {old}, used least recently")


def graph_folders(root: Path | None = None) -> list[Path]:
    """The cache's graphs (``root``, else :func:`default_graph_dir`), one folder per model, named by its key; none
    in a folder that is not tagged as the cache (:func:`~bertlstm.core.folders.tag_cache`)."""
    root = root or default_graph_dir()
    if not (root / TAG_NAME).is_file():
        return []
    return sorted(p for p in root.iterdir() if _KEY.fullmatch(p.name) and (p / GRAPH).is_file())


def clear_graphs(root: Path | None = None) -> int:
    """Remove every cached graph, remembered export failure and unfinished export but those a live export
    holds (said in a warning); returns bytes freed. Nothing else in the folder is touched."""
    root = root or default_graph_dir()
    if not (root / TAG_NAME).is_file():
        return 0
    unfinished = [p for p in root.iterdir() if _UNFINISHED.fullmatch(p.name) and p.is_dir()]
    busy = [p for p in unfinished if is_held(p)]
    if busy:
        logger.warning(
            f"left {len(busy)} graph export(s) that another run is writing ({', '.join(p.name for p in busy)})"
        )
    freed = 0
    for folder in graph_folders(root) + [p for p in unfinished if p not in busy]:
        freed += size_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
    for failed in root.glob("*.failed"):
        if _KEY.fullmatch(failed.stem):
            failed.unlink(missing_ok=True)
    return freed


def size_of(folder: Path) -> int:
    """Bytes in the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
