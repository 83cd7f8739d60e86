"""Writing predictions: a label and one probability column per class, as CSV or JSON Lines."""

from __future__ import annotations

import os
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
    path = check_predictions_output(output)
    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
    tmp.replace(path)
    print(f"wrote {len(frame)} predictions to {path}", file=sys.stderr)


def check_predictions_output(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """A file name predictions may be written to: .csv, .tsv or .jsonl, in an existing folder, not a folder
    itself and never one of the ``inputs`` (that would destroy the true labels)."""
    path = Path(output).expanduser()
    if path.suffix.lower() not in (".csv", ".tsv", ".jsonl"):
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
