"""Using a trained model: logits over a dataset in length-sorted batches, and predictions for files.

Nothing here imports the training loop: prediction needs the model, the data and this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .data import sorted_batches
from .errors import BertLSTMError

if TYPE_CHECKING:
    from .labels import Labels

logger = logging.getLogger(__name__)
PREDICTION_SUFFIXES = (".csv", ".tsv", ".jsonl")


def predict_logits(model: Any, dataset: Any, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits (N, C) in dataset order; batches sorted by length so that little goes to padding.

    ``dataset`` is a :class:`~bertlstm.data.TokenDataset` or a cached-feature dataset: anything with
    ``lengths``, items and ``collate``.
    """
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


def predictions_frame(texts: Sequence[str], proba: np.ndarray, labels: Labels, separator: str = ",") -> pd.DataFrame:
    """One row per text: the text, its label (multi-label: names joined by ``separator``), probabilities."""
    decided = [separator.join(label) if isinstance(label, list) else label for label in labels.decode(proba)]
    frame = pd.DataFrame({"text": list(texts), "label": decided})
    for i, name in enumerate(labels.names):
        frame[f"prob_{name}"] = proba[:, i].round(6)
    return frame


def check_predictions_output(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """A file name predictions may be written to: .csv, .tsv or .jsonl, in an existing folder, not a folder
    itself and never one of the ``inputs`` (that would destroy the true labels)."""
    path = Path(output).expanduser()
    if path.suffix.lower() not in PREDICTION_SUFFIXES:
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


def write_predictions(frame: pd.DataFrame, output: str | Path) -> Path:
    """To ``output`` (.csv, .tsv or .jsonl by extension), through a temporary file renamed into place."""
    path = check_predictions_output(output)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(tmp, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    tmp.replace(path)
    logger.info(f"wrote {len(frame)} predictions to {path}")
    return path


def predict_file(
    model: str | Path,
    texts: Sequence[str] | None = None,
    input: str | Path | None = None,
    output: str | Path | None = None,
    text_column: str | None = None,
    separator: str = ",",
    device: str = "auto",
) -> pd.DataFrame:
    """Label ``texts``, or the texts of the file ``input``, with the model folder ``model``; write them to
    ``output`` when given. Everything that can be checked is checked before the model is loaded."""
    from .classifier import BertLSTMClassifier
    from .data import load_texts

    if output is not None:
        check_predictions_output(output, [input] if input is not None else [])
    if input is not None:
        texts = load_texts(input, text_column)
    if not texts:
        raise BertLSTMError("no texts to label")
    clf = BertLSTMClassifier.from_pretrained(model, device=device)
    assert clf.labels is not None  # a loaded model has its labels
    frame = predictions_frame(texts, clf.predict_proba(texts), clf.labels, separator)
    if output is not None:
        write_predictions(frame, output)
    return frame
