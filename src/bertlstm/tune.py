"""A search for the best recipe on the user's data (``bertlstm tune``), with Optuna, that pays for the encoder
once: every trial of a frozen recipe reads the feature cache, so the encoder runs once per distinct layer choice
and a trial costs its LSTM epochs.

A trial trains the task's estimator with the settings Optuna samples from the search space (:class:`Space`:
the default one for the recipe, narrowed or widened by a YAML/JSON file with the settings' own names), reports
its dev metric after every epoch and is pruned when it falls behind (successive halving: only the best third
of the trials go on past epochs 1, 3 and 9), and stops early when its dev metric stops improving. The search
lives in an Optuna storage (a SQLite file beside the output by default), so that a killed search resumes
without repeating its finished trials, and several processes or machines given the same storage share one
search. By default a frozen recipe's search on a CPU runs a trial per core at once (:class:`Helpers`: each
trial trains on one thread), once every cache entry the trials read is built. At the end the best trial's model
becomes the model folder (saved by the process that trained it; trained again from its settings, as ``bertlstm
train`` would, when it ran before a resume or in a process of another command), with the search's trials and the
settings' importances in ``search.json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .core.config import TrainConfig
from .core.encoder_names import LAYER_CHOICES, LAYERS_NEEDED, encoder_config
from .core.errors import BertLSTMError, first_line, needs_packages
from .core.folders import atomic_file, output_lock
from .core.settings import Settings, check_int, load_config_file, setting
from .run_config import RunConfig

logger = logging.getLogger(__name__)
SEARCH_FILE = "search.json"  # in the best model's folder: the trials and the settings' importances
STUDY = "bertlstm"  # the one search a storage holds: the processes given the same storage share it
# What a process that makes a storage's tables while another makes them may be told: it tries again.
RACES = ("already exists", "UNIQUE constraint failed", "database is locked")
MAX_EPOCHS, PATIENCE = 10, 2  # a trial's epochs at most, and early stopping after this many without gain


# --- the search space ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]

    def sample(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def ends(self) -> tuple[Any, ...]:
        return self.values


@dataclass(frozen=True)
class Range:
    """A number from ``low`` to ``high`` (on a log scale with ``log``; whole numbers with ``whole``)."""

    low: float
    high: float
    log: bool = False
    whole: bool = False

    def sample(self, trial: Any, name: str) -> Any:
        if self.whole:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def ends(self) -> tuple[Any, ...]:
        return (int(self.low), int(self.high)) if self.whole else (self.low, self.high)


Dimension = Choice | Range

# What matters for this model (README "Find the best recipe"): the layers read, the LSTM, dropout, the rate and
# the batch size; epochs through early stopping. Fine-tuning adds the encoder's rate and its trained layers.
FROZEN_SPACE: dict[str, Dimension] = {
    "layers": Choice(("last", "second-to-last", "concat-last-4", "scalar-mix")),
    "lstm_units": Choice((64, 128, 256)),
    "lstm_layers": Range(1, 2, whole=True),
    "bidirectional": Choice((False, True)),
    "dropout": Range(0.0, 0.5),
    "lr": Range(3e-4, 1e-2, log=True),
    "batch_size": Choice((32, 64)),  # 16 doubles an epoch's time, and mattered least (BENCHMARKS)
}
FINETUNE_SPACE: dict[str, Dimension] = {
    "lstm_units": Choice((64, 128, 256)),
    "bidirectional": Choice((False, True)),
    "dropout": Range(0.0, 0.5),
    "lr": Range(3e-4, 3e-3, log=True),
    "encoder_lr": Range(1e-5, 1e-4, log=True),
    "train_top_layers": Choice((2, 3, 6)),
}


def default_space(model: Any) -> dict[str, Dimension]:
    """The search space of a recipe: the frozen one for ``frozen`` and ``pooled`` (``layers`` too: the cache
    keys its features by them), the fine-tuning one for ``finetune``; only the settings the task has, and only
    the layers the encoder has."""
    space = FINETUNE_SPACE if getattr(model, "mode", "frozen") == "finetune" else FROZEN_SPACE
    names = {f.name for f in dataclasses.fields(model)} | {f.name for f in dataclasses.fields(TrainConfig)}
    space = {name: dim for name, dim in space.items() if name in names}
    depth = (encoder_config(model.encoder) or {}).get("num_hidden_layers", 99) if "encoder" in names else 99
    if "layers" in space:
        space["layers"] = Choice(tuple(v for v in FROZEN_SPACE["layers"].ends() if LAYERS_NEEDED[v] <= depth))
    if "train_top_layers" in space:
        top = tuple(v for v in FINETUNE_SPACE["train_top_layers"].ends() if v < depth) + (depth,)
        space["train_top_layers"] = Choice(tuple(sorted(set(top))))
    return space


def read_space(path: str | Path, config: RunConfig) -> dict[str, Dimension]:
    """The default space of the run's recipe, changed by a file: ``name: [a, b]`` (one of these), ``name:
    {low: X, high: Y, log: true}`` (a range), ``name: value`` (fixed, not searched), ``name: null`` (not
    searched: the run's own setting). Every name is a setting, and every value one that setting takes."""
    given = load_config_file(path)
    space = default_space(config.model)
    for name, value in given.items():
        if value is None:
            space.pop(name, None)
        elif isinstance(value, list):
            if not value:
                raise BertLSTMError(f"{path}: '{name}': an empty list leaves nothing to choose", name)
            space[name] = Choice(tuple(value))
        elif isinstance(value, dict):
            space[name] = _range(name, value, path)
        else:
            space[name] = Choice((value,))
    check_space(space, config, f"{path}: ")
    return space


def _range(name: str, value: dict[str, Any], path: str | Path) -> Range:
    unknown = sorted(set(value) - {"low", "high", "log"})
    low, high = value.get("low"), value.get("high")
    if unknown or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise BertLSTMError(f"{path}: '{name}': a range is {{low: X, high: Y, log: true|false}}", name)
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if not low < high:
        raise BertLSTMError(f"{path}: '{name}': low {low} must be below high {high}", name)
    if value.get("log") and low <= 0:
        raise BertLSTMError(f"{path}: '{name}': a range on a log scale starts above 0, not at {low}", name)
    whole = isinstance(low, int) and isinstance(high, int)
    return Range(float(low), float(high), bool(value.get("log", False)), whole)


def _named(name: str, where: str) -> str:
    """A setting as an error names it: as the space file spells it (``where``: the file), else as a setting
    (which the command line shows as its option)."""
    return f"'{name}'" if where else f"`{name}`"


def check_space(space: dict[str, Dimension], config: RunConfig, where: str = "") -> None:
    """Every name a setting of the run's model or training, and every choice and end of a range a value that
    setting takes (the settings themselves say, as for ``train``); before any work."""
    sections = {"model": config.model.field_names(), "training": config.training.field_names()}
    for name, dim in space.items():
        section = next((s for s, names in sections.items() if name in names), None)
        if section is None or name in ("encoder", "teacher", "device", "seed", "cache_dir", "progress", "epochs"):
            searchable = ", ".join(sorted(set(default_space(config.model)) | {"max_length", "weight_decay"}))
            raise BertLSTMError(
                f"{where}{_named(name, where)} is not a setting a search can vary (such as {searchable})"
            )
        for value in dim.ends():
            try:
                values = config.to_dict()
                RunConfig.from_dict({**values, section: {**values[section], name: value}}).model.check_sources()
            except (BertLSTMError, ValueError, TypeError) as err:
                raise BertLSTMError(
                    f"{where}{_named(name, where)} cannot be {value!r}: {first_line(err)}", name
                ) from None


# --- the settings of a search ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneConfig(Settings):
    """``bertlstm tune``: how long to search, over what, and where the search is kept."""

    trials: int | None = setting(
        30, "trials in the search, every process sharing its storage counted (none: until `timeout`)", metavar="N"
    )
    timeout: str | None = setting(None, "start no trial after this long: 90s, 20m, 2h", metavar="TIME")
    space: str | None = setting(None, "a YAML or JSON file that narrows or widens the search space", metavar="FILE")
    storage: str | None = setting(
        None,
        "where the search is kept, an Optuna storage URL: sqlite:///search.db, postgresql://... shared by several "
        "machines (default: OUTPUT.search.db beside the output)",
        metavar="URL",
    )
    jobs: int | None = setting(
        None,
        "trials at once, each in its own process on one CPU core, sharing the search (default: one per core, at "
        "most 4, for a frozen or pooled recipe on a CPU; else 1)",
        metavar="N",
    )
    pruner: Literal["halving", "median", "none"] = setting(
        "halving",
        "stop a trial that falls behind: halving keeps the best third at epochs 1, 3 and 9 (successive halving); "
        "median, those above the others' median",
    )

    def __post_init__(self) -> None:
        self.check_choices()
        if self.trials is not None:
            check_int(self.trials, "trials", 1)
        if self.jobs is not None:
            check_int(self.jobs, "jobs", 1)
        if self.trials is None and self.timeout is None:
            raise BertLSTMError("a search needs an end: `trials`, `timeout`, or both", "trials")
        if self.timeout is not None:
            seconds(self.timeout)


def seconds(text: str) -> float:
    """``90s``, ``20m``, ``2h`` or a number of seconds, as seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not found or float(found[1]) <= 0:
        raise BertLSTMError(f"`timeout` must be a time such as 90s, 20m or 2h, not {text!r}", "timeout")
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]


# --- the search -----------------------------------------------------------------------------------------------
def tune_run(
    config: RunConfig,
    tune: TuneConfig,
    command: str | None = None,
    inputs: Sequence[str | Path] = (),
    fixed: Sequence[str] = (),
) -> dict[str, Any]:
    """Search, then save the best trial's model into ``config.output``; returns its metrics (with the search's).
    ``fixed`` names the settings the user set: they keep ``config``'s values in every trial, never searched.
    Everything is checked before any work: the run's files and output, the space, the storage."""
    optuna = _optuna()
    if len(config.seeds) > 1:
        raise BertLSTMError("a search trains one model with one seed: give `seed`, not `seeds`", "seeds")
    output = config.check_files(inputs)
    space = _space(config, tune, fixed)
    study = _study(optuna, tune, output, config.training.seed)
    jobs, since = processes(config, tune), time.time()
    with Helpers(jobs - 1, config, tune, space, output, since) as helpers:  # they begin trials once told
        with output_lock(output):
            data = config.task_spec.read_run_data(config.data, config.model, config.training)
            objective = Objective(config, space, data, optuna)
            start = time.perf_counter()
            if config.training.cache and (jobs > 1 or getattr(config.model, "mode", "frozen") != "finetune"):
                warm_cache(objective)  # in one encoder pass where it can; the processes only read them
            helpers.go()
            _search(optuna, study, objective, tune, since)
            holders = helpers.kept()  # once every process has stopped: the trials whose models they keep
            search = summary(optuna, study, time.perf_counter() - start)
            log_trials(search)
        number, params = study.best_trial.number, study.best_trial.params
        if number in holders:  # the best trial ran in another process: that one saves the model it keeps
            metrics = helpers.save(holders[number], command, inputs)
        else:
            metrics = _save_best(objective, number, params, command, inputs)
    with output_lock(output), atomic_file(output / SEARCH_FILE) as tmp:  # beside the model: `report` shows it
        tmp.write_text(json.dumps(search, indent=2) + "\n")
    return {**metrics, "search": {k: v for k, v in search.items() if k != "trials"}}


def _space(config: RunConfig, tune: TuneConfig, fixed: Sequence[str]) -> dict[str, Dimension]:
    """The search's space (the default, or as ``tune.space`` changes it), checked, less the ``fixed`` settings."""
    if tune.space:
        space = read_space(tune.space, config)
        both = sorted(set(fixed) & set(load_config_file(tune.space)))
        if both:
            raise BertLSTMError(
                f"{tune.space}: `{both[0]}` is set for the run and named in the search space: give it in one place",
                both[0],
            )
    else:
        space = default_space(config.model)
        check_space(space, config)
    return {name: dim for name, dim in space.items() if name not in set(fixed)}


def _save_best(
    objective: Objective, number: int, params: dict[str, Any], command: str | None, inputs: Sequence[str | Path]
) -> dict[str, Any]:
    """The best trial's model into the run's output, as ``train`` would save it: the one trained here, or (the
    trial ran before a resume) its settings trained again. Returns its metrics."""
    from .runs import keep_run, train_run  # the training machinery: once the search has found its settings

    best = objective.settings(params, trial=False)
    kept = objective.kept[2] if objective.kept and objective.kept[0] == number else None
    if kept is None or best.tensorboard:  # a TensorBoard log wants the training run itself
        return train_run(best, command=command, inputs=inputs)
    kept.set_params(progress=best.training.progress)  # the trials' quiet is theirs, not the model's
    kept.training_ = dataclasses.replace(kept.training_, progress=best.training.progress)
    return keep_run(best, kept, objective.data, command=command, inputs=inputs)


def processes(config: RunConfig, tune: TuneConfig) -> int:
    """How many processes run trials at once: ``jobs``, or by default one per CPU core the process may use (at
    most 4) when the trials train only an LSTM and a head on cached features, each on ``head_threads`` threads;
    one when they fine-tune or train on a GPU, where one trial already uses the whole machine."""
    if tune.jobs is not None:
        return tune.jobs
    from .core.device import resolve_device  # torch: only once a search runs

    training = config.training
    frozen = getattr(config.model, "mode", "frozen") != "finetune" and training.cache
    if not frozen or training.head_threads is None or resolve_device(training.device).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores // training.head_threads))


# Settings that key the feature cache: a search builds an entry for each of their choices.
CACHE_KEYED = ("layers", "train_top_layers", "max_length")


def warm_cache(objective: Objective) -> None:
    """Every feature cache entry the trials read, built before they begin, on all the CPU's threads: an encoder
    pass for each choice of the settings that key the cache, but ``layers`` the widest first, so that the others
    are taken from its entries (see ``feature_cache.derived_store``) and the encoder runs once. The search's
    processes then only read them."""
    keyed = {n: d.values for n, d in objective.space.items() if n in CACHE_KEYED and isinstance(d, Choice)}
    if "layers" in keyed:
        keyed["layers"] = tuple(sorted(keyed["layers"], key=lambda v: LAYER_CHOICES.index(v)))
    data = objective.data
    dev = data.dev if data.dev is not None else (None, None)
    for values in itertools.product(*keyed.values()):
        config = objective.settings(dict(zip(keyed, values, strict=True)))
        estimator = config.task_spec.estimator()(**config.model.as_kwargs(), **config.training.as_kwargs())
        estimator.cache_features(*data.train, *dev, **data.fit_options)


class Helpers:
    """The search's other processes (``n``, spawned): each opens the search's storage, reads the run's data, and
    once told (:meth:`go`) runs trials until the search has its trials, keeping its best trial's model; the one
    whose model is the search's best saves it. They die with this process, and stop at the end of the block."""

    def __init__(
        self, n: int, config: RunConfig, tune: TuneConfig, space: dict[str, Dimension], output: Path, since: float
    ) -> None:
        import multiprocessing  # only for a search in several processes

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: forking torch's threads is unsafe
        level = logging.getLogger("bertlstm").getEffectiveLevel()
        shown = bool(logging.getLogger("bertlstm").handlers)
        self.links: list[tuple[Any, Any]] = []
        for k in range(1, n + 1):
            ours, theirs = context.Pipe()
            args = (theirs, k, os.getpid(), config.to_dict(), (tune, space, output, since), level if shown else None)
            process = context.Process(target=_helper, args=args, daemon=True, name=f"bertlstm-trials-{k}")
            process.start()
            self.links.append((process, ours))

    def __enter__(self) -> Helpers:
        return self

    def __exit__(self, *exc: object) -> None:
        for process, link in self.links:
            with suppress(OSError):
                link.send(("stop",))
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    def go(self) -> None:
        """Once every process is ready (has read the data), all begin their trials together."""
        for k in range(len(self.links)):
            self._answer(k)
        for _, link in self.links:
            link.send(("go",))

    def _answer(self, k: int) -> Any:
        process, link = self.links[k]
        try:
            kind, value = link.recv()
        except EOFError:
            raise BertLSTMError(f"the search's process {process.name} died (exit status {process.exitcode})") from None
        if kind == "error":
            raise BertLSTMError(f"the search's process {process.name} failed: {value}")
        return value

    def kept(self) -> dict[int, int]:
        """The trials whose models the processes keep, once all have stopped: trial number -> process."""
        numbers = {k: self._answer(k) for k in range(len(self.links))}
        return {number: k for k, number in numbers.items() if number is not None}

    def save(self, k: int, command: str | None, inputs: Sequence[str | Path]) -> dict[str, Any]:
        """Process ``k`` saves the model it keeps into the run's output; its metrics."""
        self.links[k][1].send(("save", command, [str(p) for p in inputs]))
        return dict(self._answer(k))


def _helper(
    link: Any,
    k: int,
    parent: int,
    values: dict[str, Any],
    search: tuple[TuneConfig, dict[str, Dimension], Path, float],
    level: int | None,
) -> None:
    """One of the search's other processes (:class:`Helpers`)."""
    tune, space, output, since = search
    _die_with(parent)
    if level is not None:  # the command line shows what this process logs, as its own
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"[trials {k}] %(message)s"))
        logging.getLogger("bertlstm").addHandler(handler)
        logging.getLogger("bertlstm").setLevel(level)
        logging.getLogger("bertlstm").propagate = False
    try:
        optuna, config = _optuna(), RunConfig.from_dict(values)
        study = _study(optuna, tune, output, config.training.seed, offset=k)
        data = config.task_spec.read_run_data(config.data, config.model, config.training)
        objective = Objective(config, space, data, optuna)
        link.send(("ready", None))
        if link.recv()[0] != "go":
            return
        _search(optuna, study, objective, tune, since, alone=False)
        link.send(("kept", objective.kept[0] if objective.kept else None))
        order = link.recv()
        if order[0] == "save" and objective.kept:
            number = objective.kept[0]
            link.send(("saved", _save_best(objective, number, study.trials[number].params, order[1], order[2])))
    except (EOFError, KeyboardInterrupt):  # the search ended without it
        return
    except Exception as err:  # noqa: BLE001  whatever went wrong, said in one line by the main process
        link.send(("error", first_line(err)))


def _die_with(parent: int) -> None:
    """This process is killed when ``parent`` dies (Linux), so that a killed search leaves no trials running."""
    if sys.platform.startswith("linux"):
        import ctypes  # prctl, for the signal a process gets when its parent dies

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that
        os._exit(1)


def _search(optuna: Any, study: Any, objective: Objective, tune: TuneConfig, since: float, alone: bool = True) -> None:
    """The trials still due (a resumed search runs only those; processes sharing the storage stop together).
    ``since``: when this search began (trials still running from before, a killed process's, are not counted)."""
    states = optuna.trial.TrialState
    finished = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))
    due = None if tune.trials is None else tune.trials - finished
    if finished and alone:
        logger.info(f"the search holds {finished} finished trial(s); {due if due is not None else 'more'} to go")
    if due is not None and due <= 0:
        return
    timeout = seconds(tune.timeout) if tune.timeout else None
    # A trial that cannot train (it diverges at a high rate, say) fails alone, logged; the search goes on.
    callbacks = [Enough(tune.trials, since, states)] if tune.trials else []
    study.optimize(objective, n_trials=due, timeout=timeout, callbacks=callbacks, catch=(BertLSTMError,))
    if alone and not study.get_trials(deepcopy=False, states=(states.COMPLETE,)):
        raise BertLSTMError("no trial of the search finished: give it more `trials` or a longer `timeout`")


class Enough:
    """Stops a process's trials once the search has ``trials``, finished or under way in any of its processes
    (since ``since``, a time stamp): a trial is started only while the search needs one more (two processes
    that decide in the same instant may both start one)."""

    def __init__(self, trials: int, since: float, states: Any) -> None:
        self.trials, self.since, self.states = trials, datetime.fromtimestamp(since), states

    def __call__(self, study: Any, trial: Any) -> None:
        s = self.states
        trials = study.get_trials(deepcopy=False, states=(s.COMPLETE, s.PRUNED, s.RUNNING))
        running = [t for t in trials if t.state == s.RUNNING and t.datetime_start >= self.since]
        if len(running) + sum(t.state != s.RUNNING for t in trials) >= self.trials:
            study.stop()


def _optuna() -> Any:
    needs_packages(("optuna",), "tune")
    import optuna  # the tune extra

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines: our table says them
    return optuna


def _study(optuna: Any, tune: TuneConfig, output: Path, seed: int, offset: int = 0) -> Any:
    """The search in its storage (made, or found to resume or join), before any work. Processes that start
    together may race to make the storage's tables: the loser tries again, and finds them."""
    url = tune.storage or f"sqlite:///{output.with_name(output.name + '.search.db')}"
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///") :]).resolve().is_relative_to(output.resolve()):
        raise BertLSTMError(
            f"the search's storage {url} is inside the output folder {output}: keep it beside", "storage"
        )
    if tune.storage is None:
        output.parent.mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
    for attempt in range(3):
        try:
            return _open_study(optuna, tune, url, STUDY, seed + offset)
        except Exception as err:  # noqa: BLE001  a URL it cannot open: SQLAlchemy and Optuna raise many kinds
            if attempt == 2 or not any(race in str(err) for race in RACES):
                shown = _hide_password(url)
                raise BertLSTMError(f"cannot open the search's storage {shown}: {first_line(err)}", "storage") from None
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _hide_password(url: str) -> str:
    """The storage URL as an error may show it: a database server's password as ***."""
    try:
        from sqlalchemy.engine import make_url  # Optuna's own dependency

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  not a URL SQLAlchemy reads: nothing to hide in it
        return url


def _open_study(optuna: Any, tune: TuneConfig, url: str, name: str, seed: int) -> Any:
    waits = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None  # processes take turns
    # A process that dies stops beating: its trial is marked failed, and the search goes on without it.
    storage = optuna.storages.RDBStorage(url, waits, heartbeat_interval=30, grace_period=90)
    joined = len(storage.get_all_trials(storage.get_study_id_from_name(name))) if _exists(storage, name) else 0
    pruners = {
        "halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "median": optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        "none": optuna.pruners.NopPruner(),
    }
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed + joined, n_startup_trials=8),  # a joining process: its own
        pruner=pruners[tune.pruner],
        load_if_exists=True,
    )


def _exists(storage: Any, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


class Objective:
    """One trial: the run's settings with the trial's, trained on the run's data, scored on dev after every
    epoch (pruned when behind), its best epoch's dev metric returned. The best trial's model so far is kept
    (``kept``: its number, dev metric and estimator), so that the search's end need not train it again."""

    def __init__(self, config: RunConfig, space: dict[str, Dimension], data: Any, optuna: Any) -> None:
        self.config, self.space, self.data, self.optuna = config, space, data, optuna
        self.kept: tuple[int, float, Any] | None = None

    def settings(self, params: dict[str, Any], trial: bool = True) -> RunConfig:
        """The run's settings with ``params`` (a trial's) in their sections; epochs end by early stopping. A
        trial shows no progress bar (the table of trials says how it went); the final model, the run's own."""
        values = self.config.to_dict()
        training = {**values["training"], "epochs": max(self.config.training.epochs, MAX_EPOCHS)}
        training.setdefault("patience", PATIENCE)
        training["patience"] = training["patience"] or PATIENCE
        model = dict(values["model"])
        for name, value in params.items():
            (model if name in model else training)[name] = value
        if trial:
            training["progress"] = False
        return RunConfig.from_dict({**values, "model": model, "training": training})

    def __call__(self, trial: Any) -> float:
        trial.set_user_attr("process", os.getpid())
        params = {name: dim.sample(trial, name) for name, dim in self.space.items()}
        config = self.settings(params)
        task = config.task_spec
        estimator = task.estimator()(**config.model.as_kwargs(), **config.training.as_kwargs())
        optuna = self.optuna

        def report(row: dict[str, Any]) -> None:  # the metric that picks the best epoch, once labels are known
            trial.report(float(row[f"dev_{estimator._metric(config.training)}"]), int(row["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        dev = self.data.dev if self.data.dev is not None else (None, None)
        estimator.fit(*self.data.train, *dev, callbacks=[report], **self.data.fit_options)
        trial.set_user_attr("epochs", len(estimator.history_))
        value = float(estimator.metrics_[f"dev_{estimator.metrics_['metric']}"])
        if self.kept is None or value > self.kept[1]:  # ties: the earlier trial is Optuna's best
            self.kept = (trial.number, value, estimator)
        return value


def summary(optuna: Any, study: Any, seconds: float) -> dict[str, Any]:
    """The search as ``search.json`` holds it: every trial, the best, and the settings' importances."""
    states = optuna.trial.TrialState
    trials = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": t.params,
            "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None,
            "process": t.user_attrs.get("process"),  # which of the search's processes ran it
        }
        for t in study.trials
    ]
    done = [t for t in study.trials if t.state == states.COMPLETE]
    try:
        importances = optuna.importance.get_param_importances(study) if len(done) > 1 else {}
    except (RuntimeError, ValueError):  # too few distinct values to tell
        importances = {}
    best = study.best_trial
    return {
        "trials": trials,
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "importances": {k: round(float(v), 4) for k, v in importances.items()},
        "completed": len(done),
        "pruned": sum(t.state == states.PRUNED for t in study.trials),
        "seconds_this_process": round(seconds, 1),
    }


def log_trials(search: dict[str, Any]) -> None:
    """The table of trials, on the log (stderr): number, state, dev metric, epochs, seconds, settings."""
    lines = ["trial  state     dev      epochs  seconds  settings"]
    for t in search["trials"]:
        value = f"{t['value']:.4f}" if isinstance(t["value"], float) and math.isfinite(t["value"]) else "-"
        secs = f"{t['seconds']:.0f}" if t["seconds"] is not None else "-"
        params = ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
        lines.append(f"{t['number']:>5}  {t['state']:<8}  {value:<7}  {t['epochs']:>6}  {secs:>7}  {params}")
    best = search["best"]
    lines.append(f"best: trial {best['number']} (dev {best['value']:.4f})")
    if search["importances"]:
        lines.append("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in search["importances"].items()))
    logger.info("\n".join(lines))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
