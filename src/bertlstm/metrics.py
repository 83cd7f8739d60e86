"""Classification metrics (scikit-learn) and their plain-text tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def quick_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1: what is printed after each epoch."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


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


def format_report(report: dict[str, Any]) -> str:
    """The report as readable tables."""
    names = report["labels"]
    per_class = pd.DataFrame(report["per_class"]).T[["precision", "recall", "f1", "support"]]
    per_class["support"] = per_class["support"].astype(int)
    summary = pd.DataFrame(
        {
            kind: [report[f"{kind}_precision"], report[f"{kind}_recall"], report[f"{kind}_f1"]]
            for kind in ("macro", "weighted")
        },
        index=["precision", "recall", "f1"],
    ).T
    matrix = pd.DataFrame(np.array(report["confusion_matrix"]), index=names, columns=names)
    matrix.index.name, matrix.columns.name = "true", "predicted"
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200):
        return (
            f"examples: {report['n']}   accuracy: {report['accuracy']:.4f}\n\n"
            f"{summary.to_string()}\n\nper class:\n{per_class.to_string()}\n\n"
            f"confusion matrix (rows: true, columns: predicted):\n{matrix.to_string()}\n"
        )
