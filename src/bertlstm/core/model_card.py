"""A trained model in words: the Markdown summary that ``bertlstm report`` prints, and the Hub model card
(``README.md``) that every saved model folder holds. Both read only what the folder records, for any task."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .hub import is_repo_id

PACKAGED_ENCODERS = {"minilm": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}  # hub id, licence


@dataclass(frozen=True)
class CardInfo:
    """How a task's models are described on the Hub."""

    pipeline_tag: str  # the Hub's task name: text-classification, token-classification
    class_name: str  # the estimator that loads it
    call: str  # the method a user calls on raw texts
    what: str  # the model in a few words


def summary_markdown(
    title: str, meta: dict[str, Any], metrics: dict[str, Any], history: Sequence[dict[str, Any]], plots: Sequence[str]
) -> str:
    """The summary of a model from its config sections, metrics, history and plot files (names relative to
    where the Markdown goes)."""
    lines = [f"# {md(title)}", "", "## Settings", "", "| setting | value |", "|---|---|"]
    for section in ("model", "training"):
        lines += [f"| {md(name)} | {md(value)} |" for name, value in (meta.get(section) or {}).items()]
    lines.append(f"| labels | {md(', '.join(map(str, meta['labels']['names'])))} |")
    scores = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {md(k)} | {v:.4f} |" if isinstance(v, float) else f"| {md(k)} | {v} |" for k, v in scores.items()]
    lines += _per_class(metrics.get("test") or {})
    if history:
        lines += ["", "## History", "", markdown_table(list(history))]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.rsplit('/', 1)[-1]}]({_link(p)})" for p in plots]
    return "\n".join(lines) + "\n"


def md(value: Any) -> str:
    """Text for a Markdown page or table cell: HTML in it (a label named ``<script>``) shown, never run; a ``|``
    never ends the cell, a line break never the row."""
    text = html.escape(str(value), quote=False)
    return text.replace("|", "\\|").replace("`", "&#96;").replace("\r", " ").replace("\n", " ")


def code_block(text: str) -> str:
    """``text`` as a fenced code block, its fence longer than any run of backticks inside."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence}\n{text}\n{fence}"


def _link(path: str) -> str:
    """A Markdown link target: in angle brackets where spaces or parentheses would end it."""
    return f"<{path}>" if any(c in path for c in " ()") else path


def _per_class(test: dict[str, Any]) -> list[str]:
    """The test report's per-class (or per-entity-type) scores as a table."""
    per, what = (test.get("per_label"), "entity type") if test.get("tagging") else (test.get("per_class"), "class")
    if not per:
        return []
    head = ["", f"## Test, per {what}", "", f"| {what} | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    return head + [
        f"| {md(n)} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
        for n, r in per.items()
    ]


def model_card(
    repo_id: str | None,
    sections: dict[str, Any],
    metrics: dict[str, Any],
    history: Sequence[dict[str, Any]],
    card: CardInfo,
) -> str:
    """``README.md`` for the Hugging Face Hub: YAML front matter it reads, then the summary above. It
    depends only on what the folder holds (and ``repo_id``), so that saving a loaded model rewrites it
    unchanged."""
    import yaml  # only when a model is saved

    name = repo_id or "bertlstm-model"
    model = sections["model"]
    encoder = str(model.get("encoder") or model.get("teacher") or "")  # a student's base is its teacher
    base_model, licence = PACKAGED_ENCODERS.get(encoder.lower(), (encoder, "other"))
    scores = [
        {"name": f"{split} {metric.replace('_', ' ')}", "type": metric, "value": round(float(value), 4)}
        for split in ("dev", "test")
        for metric in ("accuracy", "macro_f1", "micro_f1")
        if isinstance(value := metrics.get(f"{split}_{metric}"), int | float)
    ]
    data = {"name": "held-out dev and test data of the training run", "type": "custom"}
    results = {"task": {"type": card.pipeline_tag}, "dataset": data, "metrics": scores}
    front = {
        "library_name": "bertlstm",
        "pipeline_tag": card.pipeline_tag,
        "tags": ["bertlstm", "lstm", card.pipeline_tag, model.get("mode", sections.get("task", "student"))],
        "license": licence,
        **({"base_model": base_model} if is_repo_id(base_model) else {}),
        "labels": list(sections["labels"]["names"]),
        "model-index": [{"name": name, "results": [results]}],
    }
    command = metrics.get("command")
    how = f"\n\n{code_block(command)}\n\n" if command else f" the Python API, `{card.class_name}(...).fit(...)`; "
    usage = (
        f"Trained with{how}every setting is listed below.\n\n"
        f"```python\nfrom bertlstm import {card.class_name}\n\n"
        f'model = {card.class_name}.from_pretrained("{repo_id or "path/to/this/folder"}")\n'
        f'model.{card.call}(["some text"])\n```\n'
    )
    body = summary_markdown(f"{name}: a {card.what}", sections, metrics, history, [])
    return f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n{usage}\n{body}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of equal keys as a Markdown table (floats to 4 digits)."""
    columns = list(rows[0])
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else md(v)  # noqa: E731
    lines = ["| " + " | ".join(map(md, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
