"""Writing predictions: a label and one probability column per class, as CSV or JSON Lines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import BertLSTMError


def predictions_frame(
    texts: Sequence[str], proba: np.ndarray, labels: Sequence[Any], label_names: Sequence[str], separator: str = ","
) -> pd.DataFrame:
    """One row per text: the text, its label (multi-label: names joined by ``separator``), probabilities."""
    labels = [separator.join(label) if isinstance(label, list) else label for label in labels]
    frame = pd.DataFrame({"text": list(texts), "label": labels})
    for i, name in enumerate(label_names):
        frame[f"prob_{name}"] = proba[:, i].round(6)
    return frame


def write_predictions(
    texts: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[Any],
    label_names: Sequence[str],
    output: str | None,
    separator: str = ",",
) -> None:
    """To ``output`` (.csv, .tsv or .jsonl by extension) or, when None, CSV on stdout."""
    frame = predictions_frame(texts, proba, labels, label_names, separator)
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
