"""Classification metrics (scikit-learn): what each epoch reports, multi-label thresholds tuned on dev, the
full evaluation report, and the report as tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ...core.tables import confusion_table, per_class_table, summary_table, tables_text
from .labels import Labels


def quick_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1: what is printed after each epoch."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro- and macro-F1 of 0/1 label matrices (N, C): what is printed after each multi-label epoch."""
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def tune_thresholds(y_true: np.ndarray, proba: np.ndarray, how: str | float = "per-label") -> list[float]:
    """Decision thresholds for multi-label outputs, chosen on dev to maximise F1.

    ``per-label``: each label's own best threshold (its F1); ``global``: one threshold for all (macro-F1);
    a number: that threshold for every label. The lowest threshold wins a tie.
    """
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)  # (G,)
    n_labels = y_true.shape[1]
    if how not in ("per-label", "global"):
        return [float(how)] * n_labels
    f1 = _label_f1(y_true.astype(bool), proba[:, :, None] >= grid)  # (C, G)
    if how == "global":
        return [float(grid[int(np.argmax(f1.mean(axis=0)))])] * n_labels
    return [float(t) for t in grid[np.argmax(f1, axis=1)]]


def _label_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Each label's F1 at every threshold: (N, C) true, (N, C, G) predicted -> (C, G); 0 where a label has
    neither true nor predicted examples (scikit-learn's ``zero_division=0``), in one pass over the grid."""
    tp = (y_pred & y_true[:, :, None]).sum(axis=0)  # (C, G)
    wrong = y_pred.sum(axis=0) - tp + y_true.sum(axis=0)[:, None] - tp  # false positives + false negatives
    return np.divide(2 * tp, 2 * tp + wrong, out=np.zeros(tp.shape), where=2 * tp + wrong > 0)


def multilabel_report(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Micro/macro P/R/F1, exact-match ratio and a per-label report for 0/1 matrices (N, C)."""
    report: dict[str, Any] = {"n": int(y_true.shape[0]), "multi_label": True, "labels": list(label_names)}
    report["exact_match"] = float((y_true == y_pred).all(1).mean())
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        report.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    report["per_label"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(label_names)
    }
    return report


def full_report(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted P/R/F1, per-class scores and the confusion matrix (rows = true)."""
    ids = list(range(len(label_names)))
    report: dict[str, Any] = {"n": len(y_true), "accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)
        report.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    report["labels"] = list(label_names)
    report["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(label_names)
    }
    report["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return report


def evaluation_report(labels: Labels, targets: Sequence[Any], logits: np.ndarray) -> dict[str, Any]:
    """The full evaluation report from targets (class ids, or 0/1 rows) and logits (N, C): :func:`full_report`,
    or when multi-label :func:`multilabel_report` at the labels' tuned thresholds."""
    if labels.multi_label:
        return multilabel_report(np.asarray(targets), labels.chosen(expit(logits)), labels.names)
    report = full_report(list(targets), logits.argmax(-1).tolist(), labels.names)
    return {**report, "calibration": calibration(targets, softmax(logits, axis=-1))}


def calibration(targets: Sequence[int], proba: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """How far the predicted class's probability can be trusted: per bin of that probability (``bins`` equal
    widths), how many predictions fall in it, their mean probability and how many of them are right; and the
    expected calibration error, the gap between the two averaged over the predictions."""
    confidence, right = proba.max(-1), proba.argmax(-1) == np.asarray(targets)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # (N,): each prediction's bin
    rows, gap = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        row: dict[str, Any] = {
            "low": b / bins,
            "high": (b + 1) / bins,
            "count": n,
            "confidence": None,
            "accuracy": None,
        }
        if n:
            row.update(confidence=float(confidence[inside].mean()), accuracy=float(right[inside].mean()))
            gap += n * abs(row["accuracy"] - row["confidence"])
        rows.append(row)
    return {"bins": rows, "ece": gap / max(len(confidence), 1)}


def confident_errors(
    texts: Sequence[str], targets: Sequence[int], logits: np.ndarray, names: Sequence[str], top: int = 10
) -> list[dict[str, Any]]:
    """The ``top`` texts predicted wrong with the highest probability: the first 300 characters of each
    (``whole`` when that is all of it), and its ``row`` in ``texts``."""
    proba = softmax(logits, axis=-1)
    predicted, truth = proba.argmax(-1), np.asarray(targets)
    wrong = np.flatnonzero(predicted != truth)
    worst = wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:top]
    return [
        {
            "row": int(i),
            "text": texts[i][:300],
            "whole": len(texts[i]) <= 300,
            "label": names[truth[i]],
            "predicted": names[predicted[i]],
            "probability": float(proba[i, predicted[i]]),
        }
        for i in worst
    ]


def format_report(report: dict[str, Any]) -> str:
    """A classifier's evaluation report as readable tables."""
    if report.get("multi_label"):
        headline = f"examples: {report['n']}   exact match: {report['exact_match']:.4f}"
        return tables_text(
            headline,
            [("", summary_table(report, ("micro", "macro"))), ("per label", per_class_table(report["per_label"]))],
        )
    ece = f"   expected calibration error: {report['calibration']['ece']:.4f}" if "calibration" in report else ""
    return tables_text(
        f"examples: {report['n']}   accuracy: {report['accuracy']:.4f}{ece}",
        [
            ("", summary_table(report, ("macro", "weighted"))),
            ("per class", per_class_table(report["per_class"])),
            ("confusion matrix (rows: true, columns: predicted)", confusion_table(report)),
        ],
    )
