"""The tables that evaluation reports print, whatever the task: averages, per-class scores, a confusion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def summary_table(report: dict[str, Any], kinds: tuple[str, ...]) -> pd.DataFrame:
    """Precision, recall and F1 averaged each of these ways: one row per kind."""
    scores = {k: [report[f"{k}_precision"], report[f"{k}_recall"], report[f"{k}_f1"]] for k in kinds}
    return pd.DataFrame(scores, index=["precision", "recall", "f1"]).T


def per_class_table(scores: dict[str, Any]) -> pd.DataFrame:
    """A per-class (or per-label) table of precision, recall, F1 and support."""
    table = pd.DataFrame(scores).T[["precision", "recall", "f1", "support"]]
    table["support"] = table["support"].astype(int)
    return table


def confusion_table(report: dict[str, Any]) -> pd.DataFrame:
    names = report["labels"]
    matrix = pd.DataFrame(np.array(report["confusion_matrix"]), index=names, columns=names)
    matrix.index.name, matrix.columns.name = "true", "predicted"
    return matrix


def tables_text(headline: str, tables: list[tuple[str, pd.DataFrame]]) -> str:
    """A report as text: its headline, then each table under its title (none for an untitled one), with
    floats to four digits."""
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200, "display.max_rows", 500):
        parts = [headline] + [
            f"{title}:\n{table.to_string()}" if title else table.to_string() for title, table in tables
        ]
    return "\n\n".join(parts) + "\n"
