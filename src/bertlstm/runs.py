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
from .data import check_known, label_names_of, load_labelled
from .encoders import check_max_length
from .errors import BertLSTMError
from .model_folder import check_output, is_model_folder, output_lock, remove_leftovers


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
    overwrite: bool = False  # replace an existing output that is not a bertlstm model folder
    options: dict[str, Any] = field(default_factory=dict)  # ModelConfig and TrainConfig fields


def checkpoint_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".checkpoint")


def _load(path: str, spec: RunSpec) -> tuple[list[str], list[Any]]:
    separator = spec.label_separator if spec.options.get("multi_label") else None
    return load_labelled(path, spec.text_column, spec.label_column, separator)


@dataclass
class _Prepared:
    clf: BertLSTMClassifier
    train: tuple[list[str], list[Any]]
    dev: tuple[list[str] | None, list[Any] | None]
    test: tuple[list[str], list[Any]] | None
    output: Path


def _prepare(spec: RunSpec, replaceable: Callable[[Path], bool] = is_model_folder) -> _Prepared:
    """Check every setting, read every file and check the output, before anything is created or trained."""
    if len(set(spec.seeds)) != len(spec.seeds):
        raise BertLSTMError(f"`seeds` {spec.seeds} repeat a seed; each seed must be different", "seeds")
    options = {**spec.options, **({"seed": spec.seeds[0]} if spec.seeds else {})}
    clf = BertLSTMClassifier(**options)  # checks every model and training setting
    train = _load(spec.train, spec)
    dev = _load(spec.dev, spec) if spec.dev else (None, None)
    test = _load(spec.test, spec) if spec.test else None
    multi = clf.config.multi_label
    names = label_names_of(clf._as_labels(train[1]), multi)
    clf._class_weights(names, [])  # as many weights as classes
    for path, data in ((spec.dev, dev), (spec.test, test)):
        if path and data is not None:
            check_known(clf._as_labels(data[1]), names, path, multi)
    check_max_length(clf.config.encoder, clf.config.max_length)  # reads only the encoder's config
    inputs = [f for f in (spec.train, spec.dev, spec.test) if f]
    output = check_output(spec.output, overwrite=spec.overwrite, inputs=inputs, replaceable=replaceable)
    return _Prepared(clf, train, dev, test, output)


def train_run(spec: RunSpec, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) one model, evaluate it on the test file, save it; returns its metrics.

    Nothing is created until every setting, file and the output have been checked; the output is locked for
    the whole run, so that a second run on it fails at once.
    """
    if len(spec.seeds) > 1:
        return train_seeds(spec, log)
    run = _prepare(spec)
    with output_lock(run.output):
        for leftover in remove_leftovers(run.output):
            log(f"removed {leftover.name}, left by an interrupted save")
        ckpt = checkpoint_dir(run.output)
        if not resume:
            shutil.rmtree(ckpt, ignore_errors=True)  # a stale checkpoint of an earlier run is not resumed
            ckpt.mkdir(parents=True)
            (ckpt / "run.json").write_text(json.dumps(_absolute(spec), indent=2) + "\n")
        callbacks = [_tensorboard(spec.tensorboard)] if spec.tensorboard else []
        clf = run.clf
        try:
            clf.fit(*run.train, *run.dev, checkpoint_dir=ckpt, callbacks=callbacks)
        except BaseException:
            if not (ckpt / "state").is_dir():  # nothing to resume: leave nothing behind
                shutil.rmtree(ckpt, ignore_errors=True)
            raise
        if run.test is not None:
            report = clf.evaluate(*run.test)
            clf.metrics["test"] = report
            scores = {k: v for k, v in report.items() if k in ("accuracy", "macro_f1", "micro_f1")}
            clf.metrics.update({f"test_{k}": v for k, v in scores.items()})
            log("test " + "  ".join(f"{k.replace('_', '-')} {v:.4f}" for k, v in scores.items()))
        log(f"model saved to {clf.save_pretrained(run.output, overwrite=spec.overwrite)}")
        shutil.rmtree(ckpt, ignore_errors=True)
    return clf.metrics


def _absolute(spec: RunSpec) -> dict[str, Any]:
    """The spec with absolute file names, so that a resumed run finds them from any working folder."""
    files = {
        k: str(Path(v).expanduser().resolve()) for k in ("train", "output", "dev", "test") if (v := getattr(spec, k))
    }
    return dataclasses.asdict(dataclasses.replace(spec, **files))


def resume_run(output: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Continue the run whose ``--output`` was ``output`` from its last finished epoch."""
    run_file = checkpoint_dir(Path(output).expanduser().resolve()) / "run.json"
    if not run_file.is_file():
        raise BertLSTMError(f"nothing to resume: no checkpoint at {run_file.parent}")
    try:
        spec = RunSpec(**json.loads(run_file.read_text()))
    except (ValueError, TypeError) as err:
        raise BertLSTMError(f"{run_file} is not a bertlstm run description: {err}") from None
    return train_run(spec, resume=True, log=log)


def _is_seeds_folder(path: Path) -> bool:
    """A folder written by a several-seeds run: ``seeds.json``, ``seed-N`` model folders and their checkpoints."""
    return all(
        p.name == "seeds.json"
        or p.name.startswith(".seed-")
        or (p.name.startswith("seed-") and (is_model_folder(p) or p.name.endswith(".checkpoint")))
        for p in path.iterdir()
    )


def train_seeds(spec: RunSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One model per seed in ``OUTPUT/seed-N``; ``OUTPUT/seeds.json`` holds every run and mean ± std."""
    if len(set(spec.seeds)) != len(spec.seeds):
        raise BertLSTMError(f"`seeds` {spec.seeds} repeat a seed; each seed must be different", "seeds")
    if spec.overwrite:
        raise BertLSTMError("`overwrite` does not apply to several seeds: name a new or empty output folder")
    output = _prepare(dataclasses.replace(spec, seeds=spec.seeds[:1]), replaceable=_is_seeds_folder).output
    runs = {}
    with output_lock(output):
        for seed in spec.seeds:
            log(f"--- seed {seed} ---")
            one = dataclasses.replace(spec, seeds=[seed], output=str(output / f"seed-{seed}"))
            runs[seed] = train_run(one, log=log)
        keys = [k for k, v in runs[spec.seeds[0]].items() if k.startswith(("dev_", "test_")) and isinstance(v, float)]
        summary = {}
        for key in keys:
            values = [runs[seed][key] for seed in spec.seeds]
            summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values), "values": values}
            log(f"{key}: {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f} over seeds {spec.seeds}")
        (output / "seeds.json").write_text(json.dumps({"seeds": spec.seeds, "summary": summary}, indent=2))
        for stale in output.glob("seed-*"):  # models of an earlier run's other seeds
            if stale.name not in {f"seed-{s}" for s in spec.seeds} and is_model_folder(stale):
                shutil.rmtree(stale)
    return summary


def _tensorboard(log_dir: str) -> Callable[[dict[str, Any]], None]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BertLSTMError("`tensorboard` needs the tensorboard package: pip install tensorboard") from None
    writer = SummaryWriter(log_dir)

    def log_epoch(row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                writer.add_scalar(key, value, row["epoch"])
        writer.flush()

    return log_epoch
