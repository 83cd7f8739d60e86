"""A training run from files, as settings: what ``bertlstm train`` takes, and what ``--config FILE`` holds.

Its ``data``, ``model`` and ``training`` sections are the settings classes of the run's task (looked up in the
registry); the CLI generates ``train``'s options from the same fields.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .core.config import PRESETS, DataConfig, TaskSettings, TrainConfig
from .core.errors import BertLSTMError, needs_packages
from .core.folders import check_output, is_checkpoint_folder, is_replaceable, is_seeds_folder
from .core.hub import check_dataset_reachable
from .core.settings import Settings, setting, typed_values
from .core.task import Task
from .tasks.classify.config import ClassifyData, ModelConfig
from .tasks.registry import get_task

SECTIONS = ("data", "model", "training")


@dataclass(frozen=True)
class RunConfig(Settings):
    """A training run from files."""

    task: str = setting(
        "classification", "classification (classify texts) or tagging (tag words)", metavar="classification|tagging"
    )
    preset: Literal["strong"] | None = setting(
        None, "a named recipe: strong = concat-last-4 layers into a 2-layer BiLSTM; settings given beside it win"
    )
    output: str | None = setting(None, "model folder to write (replaced atomically at the end)", metavar="DIR")
    overwrite: bool = setting(
        False, "replace output even if it is a bertlstm output of another kind (never what bertlstm did not write)"
    )
    seeds: tuple[int, ...] = setting((), "several seeds such as 0,1,2: one model each in OUTPUT/seed-N", metavar="S")
    tensorboard: str | None = setting(None, "also log each epoch to TensorBoard in this folder", metavar="DIR")
    prepare_graph: bool = setting(
        True,
        "export the saved model's ONNX graph into the graph cache where predict would run it on onnxruntime (a "
        "CPU), so that its first predict answers at once (about 15 s for the default encoder)",
    )
    data: DataConfig = field(default_factory=ClassifyData)
    model: TaskSettings = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        task = self.task_spec
        if self.preset is not None and self.preset not in PRESETS:
            raise BertLSTMError(f"`preset` must be one of {', '.join(PRESETS)}, not {self.preset!r}", "preset")
        for name, cls in (("model", task.config), ("data", task.data)):
            if type(getattr(self, name)) is not cls:
                raise BertLSTMError(f"`task` {task.name} needs {cls.__name__} settings as its {name}")
        if len(set(self.seeds)) != len(self.seeds):
            raise BertLSTMError(f"`seeds` {list(self.seeds)} repeat a seed; each seed must be different", "seeds")
        self.model.check_training(self.training)

    @property
    def task_spec(self) -> Task:
        """The run's task: ``task``, or the one that refines it for these model settings."""
        return get_task(self.task, model=self.model.to_dict())

    def check_files(self, inputs: Sequence[str | Path] = (), replaceable: Callable[[Path], bool] | None = None) -> Path:
        """The run's output folder, checked, once its data files (their columns, from their first lines), its
        encoder (and ``max_length`` against it) and its extras are: before pandas or PyTorch is imported. The
        output may never be or hold anything the run reads: its data, ``inputs`` (a settings file, a resumed
        checkpoint) and a local encoder folder."""
        if not self.data.train or not self.output:
            raise BertLSTMError("a training run needs `train` data and an `output` folder")
        for path in self.data.files():
            if path.startswith("hf:"):
                needs_packages(("datasets",), "datasets")
                check_dataset_reachable(path)
            self.task_spec.check_file(path, self.data, self.data.labelled(path))
        sources = self.model.check_sources()  # the encoder (or a student's teacher), before any data is read
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise BertLSTMError("`tensorboard` needs the tensorboard package: pip install tensorboard", "tensorboard")
        reads = [*self.data.files(), *inputs, *sources]
        replaceable = replaceable or (is_seeds_folder if len(self.seeds) > 1 else is_replaceable)
        caches = [self.training.cache_dir] if self.training.cache_dir else []
        output = check_output(
            self.output, overwrite=self.overwrite, inputs=reads, replaceable=replaceable, caches=caches
        )
        checkpoints = output.with_name(output.name + ".checkpoint")  # runs.checkpoint_dir: replaced by a new run
        if (checkpoints.exists() or checkpoints.is_symlink()) and not is_checkpoint_folder(checkpoints):
            raise BertLSTMError(
                f"{checkpoints} holds what bertlstm did not write, and a run into {self.output} keeps its checkpoints "
                "there: move it away, or name another output",
                "output",
            )
        return output

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "") -> RunConfig:
        """Sections as dicts (``{"model": {...}, "training": {...}}``) and the run's own settings."""
        values = dict(values)
        model = values.get("model")
        task = get_task(values.get("task") or None, where, model if isinstance(model, dict) else None)
        preset = values.get("preset")
        if preset is not None and preset not in PRESETS and str(preset).lower() not in ("none", "null"):
            raise BertLSTMError(f"{where}`preset` must be one of {', '.join(PRESETS)}, not {preset!r}", "preset")
        sections: dict[str, Any] = {}
        for name, section in (("data", task.data), ("model", task.config), ("training", TrainConfig)):
            given = values.pop(name, None) or {}
            if not isinstance(given, dict):
                raise BertLSTMError(f"{where}the {name!r} section must be a mapping of settings")
            if name == "model":  # a preset's settings, under those given
                given = {**PRESETS.get(str(preset), {}), **given}
            sections[name] = section.from_dict(given, f"{where}{name}: ")
        return cls(**typed_values(cls, values, where, skip=SECTIONS), **sections)

    @staticmethod
    def sections_of(task: Task) -> dict[str, type[Settings]]:
        """The settings class of each section, for ``task``: what the CLI makes options of."""
        return {"run": RunConfig, "data": task.data, "model": task.config, "training": TrainConfig}
