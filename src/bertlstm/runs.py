"""A training run as the command line does it: data files in, a model folder with reports out.

Each epoch leaves a checkpoint in ``OUTPUT.checkpoint/`` beside the future model folder, together with the
run's settings (``run.json``), so that ``bertlstm train --resume OUTPUT`` continues a killed run with nothing
else given. Several seeds train one model each (``OUTPUT/seed-N``) and report mean ± standard deviation.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .classifier import BertLSTMClassifier
from .data import load_labelled
from .errors import BertLSTMError


@dataclass
class RunSpec:
    train: str  # training data file
    output: str  # model folder to write
    dev: str | None = None  # dev data file (else a held-out fraction of train)
    test: str | None = None  # test data file, evaluated once at the end
    text_column: str | None = None  # None: auto-detect
    label_column: str | None = None  # None: auto-detect
    label_separator: str = ","  # joins the labels of one text when multi-label
    seeds: list[int] = field(default_factory=list)  # several seeds: one model each, then mean ± std
    tensorboard: str | None = None  # TensorBoard log folder
    options: dict[str, Any] = field(default_factory=dict)  # ModelConfig and TrainConfig fields


def checkpoint_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".checkpoint")


def _load(path: str, spec: RunSpec) -> tuple[list[str], list[Any]]:
    separator = spec.label_separator if spec.options.get("multi_label") else None
    return load_labelled(path, spec.text_column, spec.label_column, separator)


def train_run(spec: RunSpec, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) one model, evaluate it on the test file, save it; returns its metrics."""
    if len(spec.seeds) > 1:
        return train_seeds(spec, log)
    train = _load(spec.train, spec)
    dev = _load(spec.dev, spec) if spec.dev else (None, None)
    test = _load(spec.test, spec) if spec.test else None
    options = {**spec.options, **({"seed": spec.seeds[0]} if spec.seeds else {})}
    clf = BertLSTMClassifier(**options)
    ckpt = checkpoint_dir(spec.output)
    if not resume:
        shutil.rmtree(ckpt, ignore_errors=True)  # a stale checkpoint of an earlier run is not resumed
        ckpt.mkdir(parents=True)
        (ckpt / "run.json").write_text(json.dumps(dataclasses.asdict(spec), indent=2) + "\n")
    callbacks = [_tensorboard(spec.tensorboard)] if spec.tensorboard else []
    try:
        clf.fit(*train, *dev, checkpoint_dir=ckpt, callbacks=callbacks)
    except BaseException:
        if not (ckpt / "state").is_dir():  # nothing to resume: leave nothing behind
            shutil.rmtree(ckpt, ignore_errors=True)
        raise
    if test is not None:
        report = clf.evaluate(*test)
        clf.metrics["test"] = report
        scores = {k: v for k, v in report.items() if k in ("accuracy", "macro_f1", "micro_f1")}
        clf.metrics.update({f"test_{k}": v for k, v in scores.items()})
        log("test " + "  ".join(f"{k.replace('_', '-')} {v:.4f}" for k, v in scores.items()))
    log(f"model saved to {clf.save_pretrained(spec.output)}")
    shutil.rmtree(ckpt, ignore_errors=True)
    return clf.metrics


def resume_run(output: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Continue the run whose ``--output`` was ``output`` from its last finished epoch."""
    run_file = checkpoint_dir(output) / "run.json"
    if not run_file.is_file():
        raise BertLSTMError(f"nothing to resume: no checkpoint at {run_file.parent}")
    spec = RunSpec(**json.loads(run_file.read_text()))
    return train_run(spec, resume=True, log=log)


def train_seeds(spec: RunSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One model per seed in ``OUTPUT/seed-N``; ``OUTPUT/seeds.json`` holds every run and mean ± std."""
    runs = {}
    for seed in spec.seeds:
        log(f"--- seed {seed} ---")
        one = dataclasses.replace(spec, seeds=[seed], output=str(Path(spec.output) / f"seed-{seed}"))
        runs[seed] = train_run(one, log=log)
    keys = [k for k, v in runs[spec.seeds[0]].items() if k.startswith(("dev_", "test_")) and isinstance(v, float)]
    summary = {}
    for key in keys:
        values = [runs[seed][key] for seed in spec.seeds]
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values), "values": values}
        log(f"{key}: {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f} over seeds {spec.seeds}")
    (Path(spec.output) / "seeds.json").write_text(json.dumps({"seeds": spec.seeds, "summary": summary}, indent=2))
    return summary


def _tensorboard(log_dir: str) -> Callable[[dict[str, Any]], None]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BertLSTMError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    writer = SummaryWriter(log_dir)

    def log_epoch(row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                writer.add_scalar(key, value, row["epoch"])
        writer.flush()

    return log_epoch
