"""Plots and readable summaries of a run folder (history.csv, metrics.json, config.json), for any task.

Figures are drawn with :class:`matplotlib.figure.Figure` straight to files: no pyplot, no backend switch,
nothing global changed for a program that imports bertlstm. matplotlib is optional (``bertlstm[plots]``) and
imported only to draw; without it the plots are skipped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .core.errors import BertLSTMError
from .core.folders import REPORT_MARKS, atomic_file, is_report
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
    fig.savefig(path, dpi=100, format="png")


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
    fig.savefig(path, dpi=100, format="png")


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
    fig.savefig(path, dpi=100, format="png")


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


def draw_plots(folder: str | Path) -> list[str]:
    """The run's plots drawn into its model folder (history, confusion matrix, per-label F1 of the test report,
    else the dev one): the names written."""
    folder = Path(folder)
    _, metrics, history = _record(folder)
    return write_plots(folder, history, metrics.get("test") or metrics.get("dev"))


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


def check_report_file(path: str | Path, what: str = "report") -> Path:
    """Where a report may be written: a new file, or a report bertlstm wrote before, in an existing folder
    (``what``: how messages name it)."""
    path = Path(path).expanduser()
    if not path.resolve().parent.is_dir():
        raise BertLSTMError(f"{what} {path}: folder {path.parent} does not exist")
    if path.is_dir() or ((path.exists() or path.is_symlink()) and not is_report(path)):
        raise BertLSTMError(
            f"{what} {path} exists and is not a report bertlstm wrote (bertlstm replaces only its own outputs): "
            "name a new file, or move it away"
        )
    return path


def write_markdown(folder: str | Path, markdown: str | Path) -> Path:
    """The summary of ``folder`` written to the file ``markdown``, its plots linked from where that file is."""
    folder, path = Path(folder), check_report_file(markdown)
    meta, metrics, history = _record(folder)
    plots = [
        os.path.relpath(folder / name, path.resolve().parent) for name in PLOTS.values() if (folder / name).is_file()
    ]
    text = summary_markdown(f"Run {folder.name}", meta, metrics, history, plots)
    with atomic_file(path) as tmp:
        tmp.write_text(f"{REPORT_MARKS[0]}\n{text}", encoding="utf-8")
    return path


# --- one self-contained page ------------------------------------------------------------------------------
def plot_reliability(calibration: dict[str, Any], path: Any) -> None:
    """The reliability diagram: per bin of predicted probability, how often the prediction is right, against
    the diagonal of perfect calibration; bar widths are the bins, shading their share of the predictions."""
    bins = [b for b in calibration["bins"] if b["count"]]
    total = sum(b["count"] for b in bins)
    fig = _figure((5, 5))
    ax = fig.subplots()
    for b in bins:
        share = b["count"] / total
        ax.bar(
            b["low"], b["accuracy"], width=b["high"] - b["low"], align="edge", color=(0.2, 0.4, 0.8, 0.3 + 0.7 * share)
        )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", ylabel="share right")
    ax.set(title=f"reliability (expected calibration error {calibration['ece']:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def write_html(folder: str | Path, html_file: str | Path) -> Path:
    """One self-contained page (its images embedded) for a browser: the run's metrics and settings, the
    per-class table, the confusion matrix, the training curves, the reliability diagram with its expected
    calibration error, and the dev texts the model got most confidently wrong."""
    folder, path = Path(folder), check_report_file(html_file)
    meta, metrics, history = _record(folder)
    report = metrics.get("test") or metrics.get("dev") or {}
    which = "test" if metrics.get("test") else "dev"
    explain_errors(folder, (metrics.get("dev") or {}).get("confident_errors") or [])
    page = report_page(folder.name, meta, metrics, history, report, which, _search(folder))
    with atomic_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def explain_errors(folder: Path, errors: list[dict[str, Any]]) -> None:
    """Each dev error shown whole gains why the model predicted its label (``explanation``): the model is
    loaded for it (integrated gradients, or occlusion without Captum). Nothing is added where the model cannot
    explain, and a model that does not load leaves the errors plain, with a warning."""
    whole = [e for e in errors if "explanation" not in e and e.get("whole", len(e["text"]) < 300)]
    if not whole:
        return
    from .tasks.registry import find_model  # torch and transformers

    logger.info(f"explaining the {len(whole)} most confidently wrong dev texts ...")
    try:
        predictor = find_model(folder, "torch").predictor(device="cpu")  # gradients: the model in memory
        if not predictor.explains:
            return
        for error in whole:
            error["explanation"] = predictor.explain([error["text"]], label=error["predicted"])[0]["explanation"]
    except BertLSTMError as e:
        logger.warning(f"the dev errors are shown without why: {e}")


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.note { color: #666; }
"""


def report_page(
    name: str,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    history: Sequence[dict[str, Any]],
    report: dict[str, Any],
    which: str,
    search: dict[str, Any] | None = None,
) -> str:
    """The HTML of :func:`write_html`: every section, each with a note where the run has nothing for it."""
    sections = [
        ("Metrics", _metrics_html(metrics)),
        ("Settings", _settings_html(meta)),
        (f"Per class ({which})", _per_class_html(report)),
        (f"Confusion matrix ({which})", _image_html(plot_confusion, report, "confusion_matrix")),
        ("Training curves", _image_html(plot_history, history, None) if history else _note("no training history")),
        (f"Reliability ({which})", _reliability_html(report)),
        ("Most confidently wrong (dev)", _errors_html(metrics.get("dev") or {})),
        *([("The search that chose these settings", _search_html(search))] if search else []),
    ]
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>\n" for title, content in sections)
    title = html.escape(f"bertlstm report: {name}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{REPORT_MARKS[1]}<title>{title}</title>'
        f"<style>{_STYLE}</style></head>\n<body><h1>{title}</h1>\n{body}</body></html>\n"
    )


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


class _Raw(str):
    """A table cell that is HTML already (its text escaped)."""


def _highlighted(text: str, words: Sequence[dict[str, Any]]) -> _Raw:
    """``text`` with each explained word shaded by its score: green for the predicted label, red against it."""
    top = max((abs(w["score"]) for w in words), default=0.0) or 1.0
    parts, at = [], 0
    for word in words:
        start = text.find(word["word"], at)
        if start < 0:  # past the 300 characters kept
            continue
        color = "40, 160, 70" if word["score"] >= 0 else "210, 50, 50"
        shade = f"background: rgba({color}, {0.15 + 0.6 * abs(word['score']) / top:.2f})"
        parts += [html.escape(text[at:start]), f'<span style="{shade}" title="{word["score"]:.4f}">']
        parts += [html.escape(word["word"]), "</span>"]
        at = start + len(word["word"])
    return _Raw("".join(parts) + html.escape(text[at:]))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, _Raw):
            return f"<td>{value}</td>"
        if isinstance(value, float):
            return f'<td class="n">{value:.4f}</td>'
        if isinstance(value, int):
            return f'<td class="n">{value}</td>'
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>" + "".join("<tr>" + "".join(map(cell, row)) + "</tr>" for row in rows) + "</table>"


def _metrics_html(metrics: dict[str, Any]) -> str:
    scores = [(k, v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    command = metrics.get("command")
    return _table(("metric", "value"), scores) + (
        f"<p>command: <code>{html.escape(command)}</code></p>" if command else ""
    )


def _settings_html(meta: dict[str, Any]) -> str:
    rows = [("task", meta.get("task", "classification"))]
    for section in ("model", "training"):
        rows += [(f"{section}.{k}", "none" if v is None else v) for k, v in (meta.get(section) or {}).items()]
    return _table(
        ("setting", "value"), [(k, v if isinstance(v, int | float | str) else json.dumps(v)) for k, v in rows]
    )


def _per_class_html(report: dict[str, Any]) -> str:
    classes = report.get("per_class") or report.get("per_label")
    if not classes:
        return _note("no evaluation recorded")
    rows = [(name, r["precision"], r["recall"], r["f1"], r["support"]) for name, r in classes.items()]
    return _table(("class", "precision", "recall", "F1", "support"), rows)


def _search(folder: Path) -> dict[str, Any] | None:
    """What ``bertlstm tune`` kept beside the model it chose (``search.json``), if it did."""
    try:
        return json.loads((folder / "search.json").read_text())
    except (OSError, ValueError):
        return None


def plot_search(search: dict[str, Any], path: Any) -> None:
    """Each trial's dev metric in the order they ran, with the best so far; beside it, the settings'
    importances (Optuna's)."""
    trials = [t for t in search["trials"] if isinstance(t.get("value"), int | float)]
    fig = _figure((10, 4))
    left, right = fig.subplots(1, 2)
    numbers, values = [t["number"] for t in trials], [t["value"] for t in trials]
    pruned = [t["state"] == "pruned" for t in trials]
    left.scatter(numbers, values, c=["lightgrey" if p else "tab:blue" for p in pruned], label="trial (grey: pruned)")
    left.plot(numbers, np.maximum.accumulate(values) if values else [], color="tab:orange", label="best so far")
    left.set(title="the search", xlabel="trial", ylabel="dev metric")
    left.legend(loc="lower right")
    importances = sorted(search.get("importances", {}).items(), key=lambda kv: kv[1])
    right.barh([k for k, _ in importances], [v for _, v in importances], color="tab:green")
    right.set(title="importance of each setting (Optuna, fANOVA)", xlabel="share of the variance")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def _search_html(search: dict[str, Any]) -> str:
    best = search["best"]
    settings = ", ".join(f"{k} = {v}" for k, v in best["params"].items())
    note = (
        f"<p>{len(search['trials'])} trials ({search['completed']} completed, {search['pruned']} pruned); the best, "
        f"trial {best['number']}, scored {best['value']:.4f} on dev with {html.escape(settings)}.</p>"
    )
    return note + _image_html(plot_search, search, None)


def _image_html(draw: Any, data: Any, needs: str | None) -> str:
    """``draw(data, file)`` as an embedded PNG; a note when the run has no such data or matplotlib is missing."""
    if needs is not None and needs not in data:
        return _note("not recorded for this model")
    try:
        import matplotlib  # noqa: F401  (the plots extra: without it, the page has no images)
    except ImportError:
        return _note("images need matplotlib: pip install 'bertlstm[plots]'")
    buffer = io.BytesIO()
    draw(data, buffer)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _reliability_html(report: dict[str, Any]) -> str:
    calibration = report.get("calibration")
    if not calibration:
        return _note("not recorded for this model (single-label classifiers record it)")
    ece = f"<p>expected calibration error: <b>{calibration['ece']:.4f}</b></p>"
    return ece + _image_html(plot_reliability, calibration, None)


def _errors_html(dev: dict[str, Any]) -> str:
    errors = dev.get("confident_errors")
    if errors is None:
        return _note("not recorded for this model (single-label classifiers record them)")
    if not errors:
        return _note("the model got every dev text right")
    rows = [
        (_highlighted(e["text"], e["explanation"]) if "explanation" in e else e["text"], e["label"], e["predicted"])
        + (e["probability"],)
        for e in errors
    ]
    why = (
        ""
        if "explanation" not in errors[0]
        else _note("Shaded: why the model predicted its label, each word by its score (green for it, red against it)")
    )
    return why + _table(("text", "true label", "predicted", "probability"), rows)
