"""A training run from files, as ``bertlstm train`` does it: data files in, a model folder out.

Every setting, data file and the output are checked before anything is created; the output is then locked
for the whole run. Checkpoints (one every ``checkpoint_minutes``, at an epoch's end) go to
``OUTPUT.checkpoint/`` beside the future model folder, together with the run's settings (``run.json``), so that
``bertlstm train --resume OUTPUT`` continues a killed run with nothing else given. Several seeds train one
model each (``OUTPUT/seed-N``) and report mean ± standard deviation. Plots are drawn when asked for
(``bertlstm report --plots``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.device import check_precision, resolve_device
from .core.distributed import current_shard
from .core.errors import BertLSTMError
from .core.folders import is_replaceable, is_seeds_folder, output_lock, remove_leftovers
from .core.task import Data, RunData
from .run_config import RunConfig

logger = logging.getLogger(__name__)


def checkpoint_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".checkpoint")


@dataclass
class PreparedRun:
    """A run whose settings, files and output have all been checked: nothing is created yet."""

    config: RunConfig
    estimator: Any  # the task's estimator, with the run's settings
    data: RunData
    output: Path


def run_output(
    config: RunConfig, inputs: Sequence[str | Path] = (), replaceable: Callable[[Path], bool] | None = None
) -> Path:
    """The run's output folder, checked (:meth:`RunConfig.check_files`), and the device's precision: before
    the output is locked."""
    output = config.check_files(inputs, replaceable)
    check_precision(resolve_device(config.training.device), config.training.mixed_precision)
    return output


def prepare_run(config: RunConfig, output: Path) -> PreparedRun:
    """Read every data file and check the labels and the encoder's length limit, before any work."""
    task = config.task_spec
    data = task.read_run_data(config.data, config.model, config.training)
    estimator = task.estimator()(**config.model.as_kwargs(), **config.training.as_kwargs())
    return PreparedRun(config, estimator, data, output)


def train_run(
    config: RunConfig, resume: bool = False, command: str | None = None, inputs: Sequence[str | Path] = ()
) -> dict[str, Any]:
    """Train (or resume) one model, evaluate it on the test file, save it; returns its metrics. ``command``,
    the command line that started the run, goes into the metrics and the model card; ``inputs``: other files
    the run reads (its settings file), which the output must not hold.

    The output is checked and locked before any data is read, so a second run into it is refused at once.
    Under ``torchrun`` or ``accelerate launch`` every process runs this; only the main one locks the output,
    writes the checkpoints, the model folder and the plots, and the others wait for it where it matters.
    """
    if len(config.seeds) > 1:
        return train_seeds(config, command, inputs)
    if config.seeds:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, seed=config.seeds[0]))
    output = run_output(config, [*inputs, checkpoint_dir(config.output or "")] if resume else inputs)
    shard = current_shard(cpu=resolve_device(config.training.device).type == "cpu")
    ckpt = checkpoint_dir(output)
    with output_lock(output) if shard.is_main else nullcontext():
        run = prepare_run(config, output)
        if shard.is_main:
            _start(run, ckpt, resume)
        shard.barrier()  # the checkpoint folder (and on a resume, its state) is there for every process
        callbacks = [_tensorboard(config.tensorboard)] if config.tensorboard and shard.is_main else []
        dev = run.data.dev if run.data.dev is not None else (None, None)
        try:
            run.estimator.fit(*run.data.train, *dev, checkpoint_dir=ckpt, callbacks=callbacks, **run.data.fit_options)
        except BaseException:
            if shard.is_main and not (ckpt / "state").is_dir():  # nothing to resume: leave nothing behind
                shutil.rmtree(ckpt, ignore_errors=True)
            raise
        if run.data.test is not None:
            _evaluate_test(run.estimator, run.data.test)  # every process evaluates a share
        if command:
            run.estimator.metrics_["command"] = command
        if shard.is_main:
            _finish(run, ckpt, shard.world)
        shard.barrier()
    return run.estimator.metrics_


def keep_run(
    config: RunConfig, estimator: Any, data: RunData, command: str | None = None, inputs: Sequence[str | Path] = ()
) -> dict[str, Any]:
    """What :func:`train_run` does once its model is trained, for a model already trained with ``config`` on
    ``data`` (a search's best trial): evaluated on the test file, saved into the output, its graph prepared;
    returns its metrics."""
    output = run_output(config, inputs)
    with output_lock(output):
        _clear_leftovers(output)
        if data.test is not None:
            _evaluate_test(estimator, data.test)
        if command:
            estimator.metrics_["command"] = command
        _finish(PreparedRun(config, estimator, data, output), checkpoint_dir(output), 1)
    return estimator.metrics_


def _clear_leftovers(output: Path) -> None:
    for leftover in remove_leftovers(output):
        logger.info(f"removed {leftover.name}, left by an interrupted save")


def _start(run: PreparedRun, ckpt: Path, resume: bool) -> None:
    """Clear what a killed save left, and (unless resuming) start a fresh checkpoint folder with run.json."""
    _clear_leftovers(run.output)
    if not resume:
        shutil.rmtree(ckpt, ignore_errors=True)  # a stale checkpoint of an earlier run is not resumed
        ckpt.mkdir(parents=True)
        (ckpt / "run.json").write_text(json.dumps(_absolute(run.config).to_dict(), indent=2) + "\n")


def _finish(run: PreparedRun, ckpt: Path, world: int) -> None:
    """The model folder; the checkpoint goes once the model is safe; then the graph that predict will run
    (``prepare_graph``). Plots are drawn when asked for (``bertlstm report --plots``): a second of matplotlib is
    not added to every run."""
    folder = run.estimator.write_folder(run.output)  # checked before the run, and locked since
    shutil.rmtree(ckpt, ignore_errors=True)
    logger.info(f"model saved to {folder}")
    if run.config.prepare_graph:
        from .core.graph_cache import prepare_graph  # the ONNX exporter: only once the model is safe
        from .tasks.registry import find_model

        prepare_graph(find_model(folder, "torch"), run.estimator, world)


def _evaluate_test(estimator: Any, test: Data) -> None:
    report = estimator.evaluate(*test)
    scores = {k: v for k, v in report.items() if k in ("accuracy", "macro_f1", "micro_f1")}
    estimator.metrics_.update({"test": report, **{f"test_{k}": v for k, v in scores.items()}})
    logger.info("test " + "  ".join(f"{k.replace('_', '-')} {v:.4f}" for k, v in scores.items()))


def _absolute(config: RunConfig) -> RunConfig:
    """The config with absolute file names, so that a resumed run finds them from any working folder."""

    def absolute(path: str | None) -> str | None:
        if not path or path.startswith("hf:"):  # no file, or a Hugging Face dataset name
            return path
        return str(Path(path).expanduser().resolve())

    data = dataclasses.replace(
        config.data, train=absolute(config.data.train), dev=absolute(config.data.dev), test=absolute(config.data.test)
    )
    return dataclasses.replace(config, output=absolute(config.output), data=data)


def resume_run(output: str | Path) -> dict[str, Any]:
    """Continue the run whose output was ``output`` from its last finished epoch, with its own settings."""
    run_file = checkpoint_dir(Path(output).expanduser().resolve()) / "run.json"
    if not run_file.is_file():
        raise BertLSTMError(f"nothing to resume: no checkpoint at {run_file.parent}")
    try:
        config = RunConfig.from_dict(json.loads(run_file.read_text()), f"{run_file}: ")
    except ValueError as err:
        raise BertLSTMError(f"{run_file} is not a bertlstm run description: {err}") from None
    return train_run(config, resume=True, inputs=[run_file])


def train_seeds(config: RunConfig, command: str | None = None, inputs: Sequence[str | Path] = ()) -> dict[str, Any]:
    """One model per seed in ``OUTPUT/seed-N``; ``OUTPUT/seeds.json`` holds every run and mean ± std."""
    if config.overwrite:
        raise BertLSTMError("`overwrite` does not apply to several seeds: name a new or empty output folder")
    output = run_output(dataclasses.replace(config, seeds=config.seeds[:1]), inputs, replaceable=is_seeds_folder)
    runs, shard = {}, current_shard(cpu=resolve_device(config.training.device).type == "cpu")
    with output_lock(output) if shard.is_main else nullcontext():
        for seed in config.seeds:
            logger.info(f"--- seed {seed} ---")
            one = dataclasses.replace(config, seeds=(seed,), output=str(output / f"seed-{seed}"))
            runs[seed] = train_run(one, command=command, inputs=inputs)
        first = runs[config.seeds[0]]
        keys = [k for k, v in first.items() if k.startswith(("dev_", "test_")) and isinstance(v, float)]
        summary = {}
        for key in keys:
            values = [runs[seed][key] for seed in config.seeds]
            summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values), "values": values}
            logger.info(f"{key}: {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f} over seeds {config.seeds}")
        if shard.is_main:
            (output / "seeds.json").write_text(json.dumps({"seeds": config.seeds, "summary": summary}, indent=2))
            for stale in output.glob("seed-*"):  # models of an earlier run's other seeds
                if stale.name not in {f"seed-{s}" for s in config.seeds} and is_replaceable(stale):
                    shutil.rmtree(stale)
    return summary


def _tensorboard(log_dir: str) -> Callable[[dict[str, Any]], None]:
    try:
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard package: only with `tensorboard`
    except ImportError:
        raise BertLSTMError("`tensorboard` needs the tensorboard package: pip install tensorboard") from None
    writer = SummaryWriter(log_dir)

    def log_epoch(row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                writer.add_scalar(key, value, row["epoch"])
        writer.flush()

    return log_epoch
