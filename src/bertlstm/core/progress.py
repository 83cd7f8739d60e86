"""Progress of a long step (a feature pass, loading a model, an evaluation, an export, a server starting): on a
terminal, a bar with counts, speed and time left (tqdm draws it only when stderr is a terminal); elsewhere (a
log file, a pipe), a log line as the step starts. Each step's caller logs what it did when it ends."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from .distributed import process_rank

logger = logging.getLogger(__name__)


class Progress:
    """``with Progress("feature pass", total=n, unit="text") as step: ... step.update(k)``; ``show`` False
    (the ``progress`` setting off, or not the main process): no bar, the log line only; ``what`` None: neither
    (a step that its caller shows already)."""

    def __init__(self, what: str | None, total: int | None = None, unit: str = "it", show: bool = True) -> None:
        self.what, self.total, self.unit, self.show = what, total, unit, show
        self.bar: Any = None

    def __enter__(self) -> Progress:
        from tqdm.auto import tqdm  # light; only once a long step starts

        if self.what is None:
            return self

        show = self.show and process_rank() == 0  # under a launcher, the main process draws for all
        self.bar = tqdm(total=self.total, desc=self.what, unit=self.unit, leave=False, disable=None if show else True)
        if self.bar.disable:  # no terminal: the log line says that the step is under way
            count = f" ({self.total:,} {self.unit}{'s' if self.total != 1 else ''})" if self.total is not None else ""
            logger.info(f"{self.what}{count} ...")
        return self

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.close()
