"""Writing predictions: a label and one probability column per class, as CSV or JSON Lines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BertLSTMError


def predictions_frame(texts: Sequence[str], proba: np.ndarray, label_names: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"text": list(texts), "label": [label_names[i] for i in proba.argmax(-1)]})
    for i, name in enumerate(label_names):
        frame[f"prob_{name}"] = proba[:, i].round(6)
    return frame


def write_predictions(texts: Sequence[str], proba: np.ndarray, label_names: Sequence[str], output: str | None) -> None:
    """To ``output`` (.csv, .tsv or .jsonl by extension) or, when None, CSV on stdout."""
    frame = predictions_frame(texts, proba, label_names)
    if output is None:
        frame.to_csv(sys.stdout, index=False)
        return
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise BertLSTMError(f"--output {output}: use a .csv, .tsv or .jsonl file name")
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
    tmp.replace(path)
    print(f"wrote {len(frame)} predictions to {path}", file=sys.stderr)
