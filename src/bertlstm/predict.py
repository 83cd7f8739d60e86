"""Where scripts written for bertlstm 0.1's first releases opened a model: ``bertlstm.predict.load_predictor``.
It is :func:`bertlstm.open_model` now, which this name still calls (with a warning to move)."""

from __future__ import annotations

import os
import warnings
from typing import Any


def load_predictor(
    model: str | os.PathLike, backend: str = "auto", quantize: str | None = None, device: str = "auto"
) -> Any:
    """:func:`bertlstm.open_model` under its earlier name."""
    from .deploy.engines import open_model  # the model's engine, as the command line opens it

    warnings.warn(
        "bertlstm.predict.load_predictor is bertlstm.open_model now; call that", DeprecationWarning, stacklevel=2
    )
    return open_model(model, backend, quantize, device)
