"""Several processes (``torchrun``, ``accelerate launch``): which one this is, how to wait for the others and
how to collect their results. Everything goes through Accelerate's process state; in a plain single-process
run these are no-ops, so the same code serves both.

Work is shared by striding: process ``r`` of ``W`` takes rows ``r, r + W, r + 2W, ...`` of a length-sorted
order, so every share has texts of every length and the shares cost about the same.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` processes, and the two collective operations the work needs."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None  # every process waits here until all have arrived
    gather: Callable[[Any], list[Any]] = lambda value: [value]  # one value from each process, by rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, order: Sequence[int]) -> list[int]:
        """This process's share of ``order``."""
        return list(order[self.rank :: self.world])


ALONE = Shard()  # one process doing all the work


def launched_with_several_processes() -> bool:
    """``torchrun`` and ``accelerate launch`` set WORLD_SIZE for every process they start."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def current_shard(cpu: bool | None = None) -> Shard:
    """The shard of this process: a real one under a multi-process launcher, the whole work otherwise.
    ``cpu``: the processes compute on CPUs (gloo); by default, when there is no GPU."""
    if not launched_with_several_processes():
        return ALONE
    import torch  # only under a launcher with several processes
    from accelerate import PartialState
    from accelerate.utils import gather_object

    cpu = not torch.cuda.is_available() if cpu is None else cpu
    state = PartialState(cpu=cpu)  # joins the launcher's process group; Accelerator() later shares it
    return Shard(state.process_index, state.num_processes, state.wait_for_everyone, lambda v: gather_object([v]))


def leave_process_group() -> None:
    """Once every process is done: wait for the others, then close the launcher's process group. A process
    that exits with the group open can abort in gloo's teardown (exit code -6) after a successful run."""
    if not launched_with_several_processes():
        return
    import torch.distributed as dist  # only under a launcher with several processes

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def end_process(code: int) -> None:
    """Under a launcher with several processes, end this one now, without the interpreter's finalization:
    gloo's worker threads can still abort it there (exit -6, "terminate called without an active exception")
    after a successful run, even with the group closed. Logs and output are flushed first. A lone process
    returns, and exits as usual."""
    if not launched_with_several_processes():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shard_of(accelerator: Any) -> Shard:
    """The shard an Accelerator stands for (the whole work when it runs alone)."""
    if accelerator.num_processes == 1:
        return ALONE
    from accelerate.utils import gather_object  # only with several processes

    return Shard(
        accelerator.process_index,
        accelerator.num_processes,
        accelerator.wait_for_everyone,
        lambda value: gather_object([value]),
    )


def gather_rows(shard: Shard, rows: list[int], values: np.ndarray, total: int) -> np.ndarray:
    """Every process's ``values`` (one row per index in its ``rows``) assembled in order: (total, ...)."""
    parts = shard.gather((rows, values))
    out = np.zeros((total, *values.shape[1:]), dtype=values.dtype)
    seen = np.zeros(total, dtype=bool)
    for part_rows, part_values in parts:
        out[part_rows] = part_values
        seen[part_rows] = True
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} rows were computed by no process")
    return out


def sharded_rows(lengths: Sequence[int], shard: Shard, compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """``compute(rows)`` (outputs aligned with ``rows``) over every row, with the work shared among processes:
    each takes a stride of the length-sorted rows, and every process gets all the outputs back, in row order
    (no row twice, none left out)."""
    if shard.world == 1:
        return compute(list(range(len(lengths))))
    rows = shard.rows(sorted(range(len(lengths)), key=lambda i: -lengths[i]))
    return gather_rows(shard, rows, compute(rows), len(lengths))
