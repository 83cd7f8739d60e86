"""Plots, readable summaries and model cards of a run folder (history.csv, metrics.json, config.json).

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

from .config import ModelConfig, TaggerConfig, TrainConfig
from .model_folder import history_from_csv, read_config

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)
PACKAGED_ENCODERS = {"minilm": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}  # hub id, licence

PLOTS = {"history": "history.png", "confusion": "confusion_matrix.png", "per_label": "per_label_f1.png"}


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

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


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """The confusion matrix normalised by true class (rows sum to 1), with label names."""
    matrix = np.asarray(report["confusion_matrix"], dtype=float)
    matrix = matrix / matrix.sum(1, keepdims=True).clip(min=1)
    names = report["labels"]
    size = max(4.0, 0.6 * len(names) + 2)
    fig = _figure((size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (row-normalised)")
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="white" if matrix[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_per_label_f1(report: dict[str, Any], path: Path) -> None:
    """F1 per label (multi-label), sorted, with the support in the tick labels."""
    rows = sorted(report["per_label"].items(), key=lambda kv: kv[1]["f1"])
    fig = _figure((7, max(3.0, 0.28 * len(rows) + 1)))
    ax = fig.subplots()
    ax.barh([f"{name} ({r['support']})" for name, r in rows], [r["f1"] for _, r in rows])
    ax.set(xlabel="F1", xlim=(0, 1), title=f"per-label F1 (macro {report['macro_f1']:.3f})")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_plots(folder: Path, history: Sequence[dict[str, Any]], report: dict[str, Any] | None) -> list[str]:
    """Every plot that applies, into ``folder``; ``report`` is the dev or test evaluation."""
    try:
        import matplotlib  # noqa: F401
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


def summarize(folder: str | Path) -> str:
    """A Markdown summary of a run folder: every setting, best epoch, metrics, history and plots."""
    folder = Path(folder)
    meta = read_config(folder)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    history = history_from_csv((folder / "history.csv").read_text()) if (folder / "history.csv").is_file() else []
    plots = [name for name in PLOTS.values() if (folder / name).is_file()]
    return summary_markdown(f"Run `{folder.name}`", meta, metrics, history, plots)


def summary_markdown(
    title: str, meta: dict[str, Any], metrics: dict[str, Any], history: Sequence[dict[str, Any]], plots: Sequence[str]
) -> str:
    """The summary of a model from its config sections, metrics, history and plot files."""
    lines = [f"# {title}", "", "## Settings", "", "| setting | value |", "|---|---|"]
    model = TaggerConfig if meta.get("task") == "tagging" else ModelConfig
    for section, settings in (("model", model), ("training", TrainConfig)):
        saved = meta.get(section, {})
        lines += [f"| {name} | {saved.get(name)} |" for name in settings.__dataclass_fields__ if name in saved]
    lines.append(f"| labels | {', '.join(meta['labels']['names'])} |")
    scores = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in scores.items()]
    test = metrics.get("test") or {}
    per, what = (test.get("per_label"), "entity type") if test.get("tagging") else (test.get("per_class"), "class")
    if per:
        lines += [
            "",
            f"## Test, per {what}",
            "",
            f"| {what} | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
            for n, r in per.items()
        ]
    if history:
        lines += ["", "## History", "", _markdown_table(pd.DataFrame(list(history)))]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def model_card(
    repo_id: str | None, sections: dict[str, Any], metrics: dict[str, Any], history: Sequence[dict[str, Any]]
) -> str:
    """``README.md`` for the Hugging Face Hub: YAML front matter it reads, then the summary above. It
    depends only on what the folder holds (and ``repo_id``), so that saving a loaded model rewrites it
    unchanged."""
    name = repo_id or "bertlstm-model"
    import yaml

    tagger = sections.get("task") == "tagging"
    pipeline, cls, call, what = (
        ("token-classification", "BertLSTMTagger", "predict_spans", "BERT→BiLSTM tagger")
        if tagger
        else ("text-classification", "BertLSTMClassifier", "predict", "BERT→LSTM text classifier")
    )
    encoder = sections["model"]["encoder"]
    base_model, licence = PACKAGED_ENCODERS.get(encoder.lower(), (encoder, "other"))
    scores = [
        {"name": f"{split} {metric.replace('_', ' ')}", "type": metric, "value": round(float(value), 4)}
        for split in ("dev", "test")
        for metric in ("accuracy", "macro_f1", "micro_f1")
        if isinstance(value := metrics.get(f"{split}_{metric}"), int | float)
    ]
    data = {"name": "held-out dev and test data of the training run", "type": "custom"}
    results = {"task": {"type": pipeline}, "dataset": data, "metrics": scores}
    front = {
        "library_name": "bertlstm",
        "pipeline_tag": pipeline,
        "tags": ["bertlstm", "lstm", pipeline, sections["model"]["mode"]],
        "license": licence,
        **({"base_model": base_model} if _looks_like_hub_id(base_model) else {}),
        "labels": list(sections["labels"]["names"]),
        "model-index": [{"name": name, "results": [results]}],
    }
    command = metrics.get("command")
    how = f"`{command}`" if command else f"the Python API, `{cls}(...).fit(...)`"
    usage = (
        f"Trained with {how}; every setting is listed below.\n\n"
        f"```python\nfrom bertlstm import {cls}\n\n"
        f'model = {cls}.from_pretrained("{repo_id or "path/to/this/folder"}")\n'
        f'model.{call}(["some text"])\n```\n'
    )
    body = summary_markdown(f"{name}: a {what}", sections, metrics, history, [])
    return f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n{usage}\n{body}"


def _looks_like_hub_id(name: str) -> bool:
    from .hub import is_repo_id

    return is_repo_id(name)


def report_dict(folder: str | Path) -> dict[str, Any]:
    """What the summary shows, as data: the config sections, the metrics and the history."""
    folder = Path(folder)
    meta = read_config(folder)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    history = history_from_csv((folder / "history.csv").read_text()) if (folder / "history.csv").is_file() else []
    keep = ("format_version", "task", "model", "labels", "training")
    return {**{k: meta[k] for k in keep if k in meta}, "metrics": metrics, "history": history}


def write_report(folder: str | Path, markdown: str | Path | None = None) -> str:
    """The summary of ``folder``; also written to ``markdown`` when given."""
    text = summarize(folder)
    if markdown is not None:
        Path(markdown).write_text(text)
    return text


def _markdown_table(frame: pd.DataFrame) -> str:
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    rows += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(rows)
