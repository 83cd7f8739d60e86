"""What a task supplies to the shared machinery: the registry (:mod:`bertlstm.tasks.registry`) maps the task
name that ``config.json`` records to one :class:`Task`, and ``train``, ``predict``, ``evaluate``, ``export``,
``serve`` and ``report`` look it up once.

A task is light to import: its settings classes. Its data reader, estimator and predictor (pandas, PyTorch,
transformers) are loaded on demand, by the functions it gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import DataConfig, EncoderSettings, TrainConfig

if TYPE_CHECKING:
    from .backends import Predictor
    from .estimator import Estimator

Data = tuple[Any, Any]  # what an estimator's fit takes: examples and their labels (None where they hold them)


@dataclass
class RunData:
    """A training run's data files, read and checked before any model is built."""

    train: Data
    dev: Data | None = None
    test: Data | None = None
    fit_options: dict[str, Any] = field(default_factory=dict)  # keywords for the estimator's fit


@dataclass(frozen=True)
class Task:
    """One kind of model: its settings, data, reports, and (loaded on demand) its estimator and predictor."""

    name: str  # what config.json's "task" says, and the `task` setting of a run
    aliases: tuple[str, ...]  # other spellings of `task` (classify, tag)
    summary: str  # one line, for help texts
    config: type[EncoderSettings]  # the model settings
    data: type[DataConfig]  # the data files and how to read them
    check_file: Callable[[str, Any, bool], None]  # (file, data settings, labelled): its columns, from its head
    output_kind: Callable[[str | None, str | None], str]  # (output file or None, input file): the output format
    read_run_data: Callable[[Any, Any, TrainConfig], RunData]  # (data, model settings, training) -> checked data
    estimator: Callable[[], type[Estimator]]  # the estimator class (imports torch)
    predictor: Callable[[], type[Predictor]]  # the predictor class (imports no torch)
    refines: str | None = None  # another task whose settings select this one (documents: classification)
    claims: Callable[[dict[str, Any]], bool] | None = None  # refines: whether the model settings given select it
