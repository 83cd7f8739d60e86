"""Which engine runs a model folder for ``predict``, ``evaluate`` and ``serve``: the fastest exact one at hand.

On a CPU, onnxruntime runs this project's graphs at least as fast as PyTorch (1.03x to 1.7x on the AMD EPYC of
BENCHMARKS.md, sittings apart), with the same probabilities (within 1e-4: every export is checked against
PyTorch before it is written, and a test checks a folder's predictions both ways), and without importing torch
or transformers: 5 s of a short command's 6. So with ``backend`` auto a model folder runs on onnxruntime
through its graph, exported once into a cache of graphs and reused after, when:

* onnxruntime is installed (and, to export the graph the first time, onnxscript);
* the run is on a CPU: ``device`` cpu, or auto on a machine without CUDA;
* nothing asks for PyTorch: no ``quantize`` int8 (PyTorch's int8 weights), no explanation by gradients, a
  single process (``torchrun`` shares the work among GPUs);
* ``$BERTLSTM_BACKEND`` is not ``torch`` (which pins PyTorch whatever the above).

Otherwise the folder runs on PyTorch, as with ``backend`` torch. ``backend`` onnx runs a folder through its
cached graph whatever the device. The graph cache is ``$BERTLSTM_GRAPHS``, else
``$XDG_CACHE_HOME/bertlstm/graphs``, else ``~/.cache/bertlstm/graphs``: one folder per model, named by the
SHA-256 of its ``config.json``, which records the SHA-256 of every weight and tokenizer file; those files are
verified at every use, as a folder's are when PyTorch loads it. The 8 most recently used graphs are kept.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..core.backends import EXPORT_FORMAT, Predictor
from ..core.errors import BertLSTMError, first_line
from ..core.folders import CONFIG_NAME
from ..core.model_folder import check_files
from ..tasks.registry import ModelRef, find_model

logger = logging.getLogger(__name__)
GRAPH = "model.onnx"  # in each model's folder of the cache, with model.json and model.tokenizer.json
KEEP = 8  # graphs kept in the cache: the most recently used


def default_graph_dir() -> Path:
    """``$BERTLSTM_GRAPHS``, else ``$XDG_CACHE_HOME/bertlstm/graphs``, else ``~/.cache/bertlstm/graphs``."""
    if os.environ.get("BERTLSTM_GRAPHS"):
        return Path(os.environ["BERTLSTM_GRAPHS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bertlstm" / "graphs"


def find(model: str, backend: str) -> ModelRef:
    """The model (:func:`~bertlstm.tasks.registry.find_model`); with ``backend`` onnx a model folder too (it
    runs through its cached graph)."""
    return find_model(model, "auto" if backend == "onnx" else backend)


def open_predictor(
    ref: ModelRef,
    backend: str = "auto",
    quantize: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    gradients: bool = False,
    world: int = 1,
) -> Predictor:
    """``ref`` ready to predict on the engine chosen as the module says (``gradients``: an explanation will
    follow them; ``world``: the processes sharing the work)."""
    if ref.backend == "torch" and backend == "onnx":
        if quantize:
            raise BertLSTMError("an ONNX graph is quantized when it is exported, not when it is loaded", "quantize")
        return find_model(cached_graph(ref), "onnx").predictor(None, "cpu", batch_size)
    if ref.backend == "torch" and runs_on_onnx(backend, quantize, device, gradients, world):
        try:
            return find_model(cached_graph(ref), "onnx").predictor(None, "cpu", batch_size)
        except ExportFailed as err:  # auto: the model as it is, on PyTorch
            logger.warning(f"{ref.path} runs on PyTorch: {err}")
    return ref.predictor(quantize, device, batch_size)


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


def cached_graph(ref: ModelRef, root: Path | None = None) -> Path:
    """The model folder's ONNX graph in the cache (``root``, else :func:`default_graph_dir`), its files
    verified; exported there first if it is not yet (once per model: a process that finds another's finished
    graph uses it)."""
    root = root or default_graph_dir()
    check_files(ref.path, ref.meta)  # the folder's weights and tokenizer, as recorded in its config.json
    key = hashlib.sha256((ref.path / CONFIG_NAME).read_bytes() + str(EXPORT_FORMAT).encode()).hexdigest()[:32]
    final, failed = root / key, root / f"{key}.failed"
    if (final / GRAPH).is_file():
        logger.debug(f"{ref.path} runs on its cached ONNX graph {final / GRAPH}")
        os.utime(final)  # used now: the last to be evicted
        return final / GRAPH
    if failed.is_file():
        raise ExportFailed(f"its export failed before ({failed.read_text().strip()})")
    from .export import export_onnx  # torch and transformers: only to export

    root.mkdir(parents=True, exist_ok=True)
    logger.info(f"exporting {ref.path} to an ONNX graph for onnxruntime, once (into {root}) ...")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{key}.tmp-") as tmp:
        export_log = logging.getLogger("bertlstm.deploy.export")
        level = export_log.level
        export_log.setLevel(logging.WARNING)  # its temporary paths are not the user's business
        try:
            export_onnx(ref.path, Path(tmp) / GRAPH)
        except Exception as err:  # noqa: BLE001  an encoder the exporter cannot take: remembered, not retried
            why = first_line(err)
            failed.write_text(why + "\n")
            raise ExportFailed(f"its export to ONNX failed ({why})") from None
        finally:
            export_log.setLevel(level)
        try:
            os.rename(tmp, final)  # whole or not at all
        except OSError:
            if not (final / GRAPH).is_file():  # not another process's finished graph: a real failure
                raise
        else:
            Path(tmp).mkdir()  # for TemporaryDirectory to remove
    logger.info(f"exported in {time.perf_counter() - start:.1f}s; later runs of this model start from it")
    evict(root, KEEP)
    return final / GRAPH


def evict(root: Path, keep: int) -> None:
    """Only the ``keep`` most recently used graphs stay (a model trained again is a new graph; each is the size
    of its weights)."""
    graphs = sorted(graph_folders(root), key=lambda p: p.stat().st_mtime)
    for old in graphs[: max(0, len(graphs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
        logger.debug(f"removed the cached graph {old}, used least recently")


def graph_folders(root: Path | None = None) -> list[Path]:
    """The cache's graphs (``root``, else :func:`default_graph_dir`), one folder per model."""
    root = root or default_graph_dir()
    return sorted(p for p in root.iterdir() if (p / GRAPH).is_file()) if root.is_dir() else []


def clear_graphs(root: Path | None = None) -> int:
    """Remove every cached graph, remembered export failure and unfinished export; returns bytes freed. Nothing
    else in the folder is touched."""
    root = root or default_graph_dir()
    if not root.is_dir():
        return 0
    leftovers = [p for p in root.iterdir() if p.name.startswith(".") and ".tmp-" in p.name and p.is_dir()]
    freed = 0
    for folder in graph_folders(root) + leftovers:
        freed += size_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
    for failed in root.glob("*.failed"):
        failed.unlink()
    return freed


def size_of(folder: Path) -> int:
    """Bytes in the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
