"""What happens at the end of each epoch, one small class each: keep the best weights, stop early, write a
checkpoint, log a line. The :class:`~bertlstm.core.training.Trainer` calls every callback's hooks in order;
``on_epoch_end`` returns True to stop training. What a callback may use of the trainer is :class:`Trainer`
below."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from .config import TrainConfig
from .distributed import Shard

logger = logging.getLogger(__name__)


class Trainer(Protocol):
    """What a callback sees of :class:`bertlstm.core.training.Trainer`."""

    config: TrainConfig
    history: list[dict[str, Any]]  # one row per finished epoch
    base_model: Any  # the model being trained (a TrainableModel)
    shard: Shard  # this process among those of the run
    first_epoch: int  # where training starts (later, after a resume)
    dev_outputs: Any  # the outputs of the last dev evaluation (an array), None before the first

    def save_checkpoint(self, folder: Path, epoch: int) -> None: ...

    def load_checkpoint(self, folder: Path) -> int: ...


class Callback:
    """Hooks with nothing in them; a callback overrides the ones it needs. Tensors it must keep across a
    resume go in :meth:`tensors` (saved with each checkpoint) and come back through :meth:`load_tensors`."""

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        return False

    def on_train_end(self, trainer: Trainer) -> None:
        pass

    def tensors(self) -> dict[str, Tensor]:
        return {}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        pass


class EveryEpoch(Callback):
    """A plain function called with each epoch's history row (what ``fit(callbacks=[...])`` accepts)."""

    def __init__(self, function: Callable[[dict[str, Any]], Any]) -> None:
        self.function = function

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        self.function(row)
        return False


def as_callback(item: Callback | Callable[[dict[str, Any]], Any]) -> Callback:
    return item if isinstance(item, Callback) else EveryEpoch(item)


def best_row(history: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The first epoch with the highest ``key`` (ties go to the earlier epoch)."""
    return max(history, key=lambda row: row[key])  # max keeps the first of equal values


class LogEpoch(Callback):
    """One line per epoch: loss, dev metrics and timings."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        scores = "  ".join(f"dev {k[4:].replace('_', '-')} {v:.4f}" for k, v in row.items() if k.startswith("dev_"))
        logger.info(
            f"epoch {row['epoch']}/{trainer.config.epochs}: loss {row['train_loss']:.4f}  {scores}  "
            f"(train {row['train_seconds']:.1f}s, {row['examples_per_s']:.0f} ex/s; dev {row['eval_seconds']:.1f}s)"
        )
        return False


class KeepBest(Callback):
    """Remember the weights of the best epoch by ``dev_<metric>`` (and its dev outputs, so that they need not be
    computed again) and put them back when training ends."""

    def __init__(self, metric: str) -> None:
        self.key = f"dev_{metric}"
        self.best: dict[str, Any] = {}  # the best epoch's history row
        self.weights: dict[str, Tensor] = {}
        self.outputs: Any = None  # its dev outputs; None when it was an epoch before a resume

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        if best_row(trainer.history, self.key) is row:
            self.best, self.weights = row, trainer.base_model.trainable_state_dict()
            self.outputs = trainer.dev_outputs
        return False

    def on_train_end(self, trainer: Trainer) -> None:
        self.best = best_row(trainer.history, self.key)
        trainer.base_model.load_trainable_state_dict(self.weights)
        logger.info(f"best epoch: {self.best['epoch']} ({self.key.replace('_', ' ')} {self.best[self.key]:.4f})")

    def tensors(self) -> dict[str, Tensor]:
        return self.weights

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.weights, self.outputs = tensors, None


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better ``dev_<metric>``."""

    def __init__(self, metric: str, patience: int) -> None:
        self.key, self.patience = f"dev_{metric}", patience

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        waited = row["epoch"] - best_row(trainer.history, self.key)["epoch"]
        if waited >= self.patience:
            logger.info(f"early stop: no better {self.key.replace('_', ' ')} for {self.patience} epoch(s)")
            return True
        return False


class Checkpoint(Callback):
    """A checkpoint in ``folder`` (written by the main process) at the end of an epoch once ``minutes`` have
    passed since the last one, or since training began (0: after every epoch), so that epochs of a few seconds
    do not each pay for one; at the start, resume from one (every process, from the same folder). A resume
    redoes the epochs after the checkpoint, to the same result."""

    def __init__(
        self, folder: str | os.PathLike, minutes: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.folder, self.seconds, self.clock = Path(folder), 60 * minutes, clock
        self.last = clock()

    def on_train_begin(self, trainer: Trainer) -> None:
        self.last = self.clock()
        if (self.folder / "state").is_dir():
            trainer.first_epoch = trainer.load_checkpoint(self.folder) + 1
            logger.info(f"resumed from {self.folder} after epoch {trainer.first_epoch - 1}")

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        due = trainer.shard.gather(self.clock() - self.last >= self.seconds)[0]  # the main process decides for all
        if due:
            trainer.save_checkpoint(self.folder, row["epoch"])  # every process: their random states are gathered
            self.last = self.clock()
            if trainer.shard.is_main:
                logger.info(f"checkpoint saved: epoch {row['epoch']} -> {self.folder}")
        return False
