"""``bertlstm export``: a model folder as one ONNX graph (two for a model in two halves), optionally int8, with
its tokenizer and metadata beside it, written where the user says and only there. The export itself, and its
checks, are :mod:`bertlstm.core.onnx_export`'s."""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.backends import written_files
from ..core.folders import CONFIG_NAME
from ..core.model_folder import file_sha256
from ..core.onnx_export import export_estimator
from .checks import check_export
from .config import ExportConfig

logger = logging.getLogger(__name__)


def export_onnx(
    model_dir: str | Path, output: str | Path, quantize: str | None = None, overwrite: bool = False
) -> Path:
    """Export the model folder ``model_dir`` to ``output`` (``NAME.onnx``, and a model in two halves also
    ``NAME.windows.onnx``), with ``NAME.tokenizer.json`` and ``NAME.json`` beside it; ``quantize="int8"`` writes
    onnxruntime's dynamically quantized graphs instead. Existing files are replaced only when they are an
    earlier export of bertlstm's, with ``overwrite``; never the model's own."""
    given = {"model": str(model_dir), "output": str(output), "quantize": quantize, "overwrite": overwrite}
    settings = ExportConfig.from_dict(given)
    ref, path = check_export(settings)
    logger.info(f"export writes {', '.join(str(t) for t in written_files(path))}")
    estimator = ref.estimator(device="cpu")
    source = file_sha256(ref.path / CONFIG_NAME)
    export_estimator(estimator, path, quantize, source, overwrite)
    logger.info(f"exported {model_dir} to {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path
