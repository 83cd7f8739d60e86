"""Tagging metrics (seqeval, entity level): what each epoch reports, the full evaluation report with a
confusion of entity types, and the report as tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from seqeval.metrics import classification_report
from seqeval.metrics import f1_score as entity_f1

from ...core.tables import confusion_table, per_class_table, summary_table, tables_text
from .data import spans


def tag_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro-F1 (seqeval, IOB2) and word accuracy: what is printed after each tagging epoch."""
    words = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True))
    return {"micro_f1": float(entity_f1(list(gold), list(predicted))), "accuracy": right / max(words, 1)}


def tag_report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level micro and macro P/R/F1 and per type (seqeval), word accuracy, and a confusion of entity
    types: each gold entity against the predicted entity with the same words (``O``: none), plus predicted
    entities that match no gold one (row ``O``)."""
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


def format_report(report: dict[str, Any]) -> str:
    """A tagger's evaluation report as readable tables."""
    scores = f"entity micro-F1: {report['micro_f1']:.4f}   word accuracy: {report['accuracy']:.4f}"
    headline = f"sentences: {report['n']}   {scores}"
    return tables_text(
        headline,
        [
            ("", summary_table(report, ("micro", "macro"))),
            ("per entity type", per_class_table(report["per_label"])),
            ("entity types (rows: true, columns: predicted with the same words; O: none)", confusion_table(report)),
        ],
    )
