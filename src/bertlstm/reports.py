"""Plots and readable summaries of a run folder (history.csv, metrics.json, config.json), for any task.

Figures are drawn with :class:`matplotlib.figure.Figure` straight to files: no pyplot, no backend switch,
nothing global changed for a program that imports bertlstm. matplotlib is optional (``bertlstm[plots]``) and
imported only to draw; without it the plots are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .core.model_card import summary_markdown
from .core.model_folder import history_from_csv, read_config

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

PLOTS = {"history": "history.png", "confusion": "confusion_matrix.png", "per_label": "per_label_f1.png"}


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure  # the plots extra: only to draw

    return Figure(figsize=size)


def plot_history(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Training loss and the dev metrics per epoch."""
    frame = pd.DataFrame(history)
    fig = _figure((10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(frame["epoch"], frame["train_loss"], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    for column in [c for c in frame.columns if c.startswith("dev_")]:
        right.plot(frame["epoch"], frame[column], marker="o", label=column[4:])
    right.set(title="dev", xlabel="epoch", ylabel="score")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


MOST_CLASSES = 20  # a plot shows at most this many classes: its size and memory stay small whatever the count


def most_confused(matrix: np.ndarray, names: Sequence[str], top: int = MOST_CLASSES) -> tuple[np.ndarray, list[str]]:
    """The ``top`` classes most often mistaken (for another, or another for them), and their sub-matrix."""
    if len(names) <= top:
        return matrix, list(names)
    errors = matrix.sum(0) + matrix.sum(1) - 2 * np.diag(matrix)
    keep = np.sort(np.argsort(-errors, kind="stable")[:top])
    return matrix[np.ix_(keep, keep)], [names[i] for i in keep]


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """The confusion matrix normalised by true class (rows sum to 1), with label names; with many classes, the
    most confused of them."""
    counts, names = most_confused(np.asarray(report["confusion_matrix"], dtype=float), report["labels"])
    matrix = counts / counts.sum(1, keepdims=True).clip(min=1)
    fig = _figure((max(4.0, 0.6 * len(names) + 2),) * 2)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    shown = (
        "" if len(names) == len(report["labels"]) else f", the {len(names)} most confused of {len(report['labels'])}"
    )
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix (row-normalised{shown})")
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > 0.5 else "black"
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_per_label_f1(report: dict[str, Any], path: Path) -> None:
    """F1 per label (multi-label), sorted, with the support in the tick labels; with many labels, the lowest."""
    rows = sorted(report["per_label"].items(), key=lambda kv: kv[1]["f1"])
    shown = rows[: 2 * MOST_CLASSES]
    fig = _figure((7, max(3.0, 0.28 * len(shown) + 1)))
    ax = fig.subplots()
    ax.barh([f"{name} ({r['support']})" for name, r in shown], [r["f1"] for _, r in shown])
    which = "" if len(shown) == len(rows) else f"; the {len(shown)} lowest of {len(rows)}"
    ax.set(xlabel="F1", xlim=(0, 1), title=f"per-label F1 (macro {report['macro_f1']:.3f}{which})")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_plots(folder: Path, history: Sequence[dict[str, Any]], report: dict[str, Any] | None) -> list[str]:
    """Every plot that applies, into ``folder``; ``report`` is the dev or test evaluation."""
    try:
        import matplotlib  # noqa: F401  (the plots extra: without it, no plots)
    except ImportError:
        logger.info("plots skipped: drawing them needs matplotlib (pip install 'bertlstm[plots]')")
        return []
    written = []
    if history:
        plot_history(history, folder / PLOTS["history"])
        written.append(PLOTS["history"])
    if report is not None and "confusion_matrix" in report:
        plot_confusion(report, folder / PLOTS["confusion"])
        written.append(PLOTS["confusion"])
    if report is not None and "per_label" in report:
        plot_per_label_f1(report, folder / PLOTS["per_label"])
        written.append(PLOTS["per_label"])
    return written


def _record(folder: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """A model folder's config, metrics and history."""
    meta = read_config(folder)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    history = history_from_csv((folder / "history.csv").read_text()) if (folder / "history.csv").is_file() else []
    return meta, metrics, history


def summarize(folder: str | Path) -> str:
    """A Markdown summary of a run folder: every setting, best epoch, metrics, history and plots."""
    folder = Path(folder)
    meta, metrics, history = _record(folder)
    plots = [name for name in PLOTS.values() if (folder / name).is_file()]
    return summary_markdown(f"Run `{folder.name}`", meta, metrics, history, plots)


def report_dict(folder: str | Path) -> dict[str, Any]:
    """What the summary shows, as data: the config sections, the metrics and the history."""
    meta, metrics, history = _record(Path(folder))
    keep = ("format_version", "task", "model", "labels", "training")
    return {**{k: meta[k] for k in keep if k in meta}, "metrics": metrics, "history": history}


def write_report(folder: str | Path, markdown: str | Path | None = None) -> str:
    """The summary of ``folder``; also written to ``markdown`` when given."""
    text = summarize(folder)
    if markdown is not None:
        Path(markdown).write_text(text)
    return text
