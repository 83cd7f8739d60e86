"""Classification metrics (scikit-learn), tagging metrics (seqeval), and their plain-text tables."""

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


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro- and macro-F1 of 0/1 label matrices (N, C): what is printed after each multi-label epoch."""
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def tune_thresholds(y_true: np.ndarray, proba: np.ndarray, how: str | float = "per-label") -> list[float]:
    """Decision thresholds for multi-label outputs, chosen on dev to maximise F1.

    ``per-label``: each label's own best threshold (its F1); ``global``: one threshold for all (macro-F1);
    a number: that threshold for every label.
    """
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)
    n_labels = y_true.shape[1]
    if how not in ("per-label", "global"):
        return [float(how)] * n_labels
    if how == "global":
        scores = [f1_score(y_true, proba >= t, average="macro", zero_division=0) for t in grid]
        return [float(grid[int(np.argmax(scores))])] * n_labels
    best = []
    for j in range(n_labels):
        scores = [f1_score(y_true[:, j], proba[:, j] >= t, zero_division=0) for t in grid]
        best.append(float(grid[int(np.argmax(scores))]))
    return best


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


def _summary(report: dict[str, Any], kinds: tuple[str, ...]) -> pd.DataFrame:
    """Precision, recall and F1 averaged each of these ways: one row per kind."""
    scores = {k: [report[f"{k}_precision"], report[f"{k}_recall"], report[f"{k}_f1"]] for k in kinds}
    return pd.DataFrame(scores, index=["precision", "recall", "f1"]).T


def _per(scores: dict[str, Any]) -> pd.DataFrame:
    """A per-class (or per-label) table of precision, recall, F1 and support."""
    table = pd.DataFrame(scores).T[["precision", "recall", "f1", "support"]]
    table["support"] = table["support"].astype(int)
    return table


def _confusion(report: dict[str, Any]) -> pd.DataFrame:
    names = report["labels"]
    matrix = pd.DataFrame(np.array(report["confusion_matrix"]), index=names, columns=names)
    matrix.index.name, matrix.columns.name = "true", "predicted"
    return matrix


def format_report(report: dict[str, Any]) -> str:
    """The report as readable tables."""
    if report.get("multi_label"):
        return _format_multilabel(report)
    if report.get("tagging"):
        return _format_tagging(report)
    per_class, summary, matrix = _per(report["per_class"]), _summary(report, ("macro", "weighted")), _confusion(report)
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200):
        return (
            f"examples: {report['n']}   accuracy: {report['accuracy']:.4f}\n\n"
            f"{summary.to_string()}\n\nper class:\n{per_class.to_string()}\n\n"
            f"confusion matrix (rows: true, columns: predicted):\n{matrix.to_string()}\n"
        )


def _format_multilabel(report: dict[str, Any]) -> str:
    summary, per_label = _summary(report, ("micro", "macro")), _per(report["per_label"])
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200, "display.max_rows", 500):
        return (
            f"examples: {report['n']}   exact match: {report['exact_match']:.4f}\n\n"
            f"{summary.to_string()}\n\nper label:\n{per_label.to_string()}\n"
        )


# --- tagging ----------------------------------------------------------------------------------------------
def tag_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro-F1 (seqeval, IOB2) and word accuracy: what is printed after each tagging epoch."""
    from seqeval.metrics import f1_score as entity_f1

    words = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True))
    return {"micro_f1": float(entity_f1(list(gold), list(predicted))), "accuracy": right / max(words, 1)}


def tag_report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level micro and macro P/R/F1 and per type (seqeval), word accuracy, and a confusion of entity
    types: each gold entity against the predicted entity with the same words (``O``: none), plus predicted
    entities that match no gold one (row ``O``)."""
    from seqeval.metrics import classification_report

    from .tag_data import spans

    table = classification_report(list(gold), list(predicted), output_dict=True, zero_division=0)
    types = sorted(k for k in table if not k.endswith(" avg"))
    report: dict[str, Any] = {"n": len(gold), "tagging": True, **tag_metrics(gold, predicted)}
    for average in ("micro", "macro"):
        row = table[f"{average} avg"]
        report.update(
            {f"{average}_{k}": float(row[f"{'f1-score' if k == 'f1' else k}"]) for k in ("precision", "recall", "f1")}
        )
    report["per_label"] = {
        t: {
            "precision": float(table[t]["precision"]),
            "recall": float(table[t]["recall"]),
            "f1": float(table[t]["f1-score"]),
            "support": int(table[t]["support"]),
        }
        for t in types
    }
    names = [*types, "O"]
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for g, p in zip(gold, predicted, strict=True):
        true = {(a, b): t for a, b, t in spans(g)}
        guessed = {(a, b): t for a, b, t in spans(p)}
        for where, t in true.items():
            matrix[index[t], index.get(guessed.get(where, "O"), index["O"])] += 1
        for where, t in guessed.items():
            if where not in true and t in index:
                matrix[index["O"], index[t]] += 1
    report["labels"], report["confusion_matrix"] = names, matrix.tolist()
    return report


def _format_tagging(report: dict[str, Any]) -> str:
    summary, per_type, matrix = _summary(report, ("micro", "macro")), _per(report["per_label"]), _confusion(report)
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200):
        return (
            f"sentences: {report['n']}   entity micro-F1: {report['micro_f1']:.4f}   word accuracy: "
            f"{report['accuracy']:.4f}\n\n{summary.to_string()}\n\nper entity type:\n{per_type.to_string()}\n\n"
            f"entity types (rows: true, columns: predicted with the same words; O: none):\n{matrix.to_string()}\n"
        )
