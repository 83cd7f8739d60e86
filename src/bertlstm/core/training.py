"""A small training loop with overridable steps and a short list of callbacks; device placement and mixed
precision through Accelerate.

The :class:`Trainer` knows nothing of BERT or LSTMs: it trains any module that offers the few methods of
:class:`TrainableModel` (the classifier here; a tagger or a benchmark's control model as well). What happens
at the end of an epoch is up to callbacks (:mod:`bertlstm.callbacks`): keep the best weights, stop early,
write a checkpoint, log a line. A checkpoint holds everything needed to resume with the same result as an
uninterrupted run: the batch order depends only on the seed and the epoch, and every random state (Python,
NumPy, torch CPU and CUDA) is saved and restored.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .batching import LengthGroupedBatches
from .callbacks import Callback, as_callback
from .config import TrainConfig
from .device import check_precision, resolve_device
from .distributed import shard_of
from .errors import BertLSTMError, first_line
from .folders import atomic_folder
from .inference import Predict, TensorCollate, predict_logits, sharded_outputs

logger = logging.getLogger(__name__)


class TrainableModel(Protocol):
    """What the :class:`Trainer` needs of a model (an ``nn.Module``) besides calling it on a batch."""

    encoder_frozen: bool  # True: a constant learning rate; False: linear warmup and decay

    def compute_loss(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """The batch's loss summed over its examples (the trainer divides by their number)."""
        ...

    def parameter_groups(self, training: TrainConfig) -> list[dict[str, Any]]:
        """AdamW parameter groups, each with its ``lr`` and ``weight_decay``."""
        ...

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """A CPU copy of every tensor training changes."""
        ...

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None: ...


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An Accelerator for the requested device; a device that is not there is a clear error. Under
    ``torchrun`` or ``accelerate launch`` it joins their process group (gloo on CPUs, nccl on GPUs)."""
    device = resolve_device(config.device)
    check_precision(device, config.mixed_precision)
    # The scheduler is built for the optimizer steps of one process (see prepare): step it once per step.
    return Accelerator(
        cpu=device.type == "cpu", mixed_precision=config.mixed_precision, step_scheduler_with_optimizer=False
    )


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op CPU threads set to ``n`` for a while, then as they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _groups(batches: Iterable[dict[str, Tensor]], size: int) -> Iterator[list[dict[str, Tensor]]]:
    """Consecutive micro-batches, ``size`` at a time (the last group may be smaller)."""
    group: list[dict[str, Tensor]] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class Trainer:
    """Trains a :class:`TrainableModel`; ``predict`` gives its outputs over a dataset (logits by default; a
    tagger's decoded tags), and ``score`` turns the dev outputs into the metrics of each epoch.

    Override :meth:`compute_loss`, :meth:`train_step`, :meth:`eval_step`, :meth:`evaluate`,
    :meth:`create_optimizer` or :meth:`create_scheduler` to change one piece.
    """

    def __init__(
        self,
        model: Any,
        config: TrainConfig,
        score: Callable[[np.ndarray, Dataset], dict[str, float]],
        callbacks: Sequence[Callback | Callable[[dict[str, Any]], Any]] = (),
        loss_weight: Tensor | None = None,
        accelerator: Accelerator | None = None,
        predict: Predict = predict_logits,
    ) -> None:
        self.config = config
        self.predict = predict
        self.accelerator = accelerator or make_accelerator(config)
        self.model = model  # after prepare(): as Accelerate wrapped it (for several processes)
        self.base_model: TrainableModel = model  # always the plain module
        self.score = score
        self.callbacks = [as_callback(c) for c in callbacks]
        self.loss_weight = loss_weight  # (C,) per-class loss weights (pos_weight when multi-label)
        self.history: list[dict[str, Any]] = []
        self.dev_outputs: np.ndarray | None = None  # the last evaluation's outputs
        self.first_epoch = 1  # a resumed run starts later
        self.shard = shard_of(self.accelerator)  # this process among those of the run

    # --- the pieces -------------------------------------------------------------------------------
    def create_optimizer(self) -> Optimizer:
        """One AdamW over the model's parameter groups (in ``finetune``: encoder at a low lr, then the rest);
        fused into one kernel where the model asks for it (a student's large embedding table: 10x faster on a
        CPU, BENCHMARKS.md)."""
        if getattr(self.base_model, "fused_optimizer", False):
            return AdamW(self.base_model.parameter_groups(self.config), fused=True)
        return AdamW(self.base_model.parameter_groups(self.config), foreach=True)

    def create_scheduler(self, optimizer: Optimizer, total_steps: int) -> LambdaLR:
        """Linear warmup and decay when fine-tuning; a constant rate for the frozen recipes."""
        if self.base_model.encoder_frozen:
            return LambdaLR(optimizer, lambda step: 1.0)
        from transformers import get_linear_schedule_with_warmup  # fine-tuning: transformers is loaded already

        warmup = math.ceil(self.config.warmup_ratio * total_steps)
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    def prepare(self, train: Dataset) -> DataLoader:
        """Batches, optimizer and scheduler, placed by Accelerate. With several processes each takes every
        N-th length-grouped batch; the schedule counts the optimizer steps of one process."""
        cfg = self.config
        self.sampler = LengthGroupedBatches(train.lengths, cfg.batch_size, cfg.seed)  # type: ignore[attr-defined]
        collate = TensorCollate(train.collate)  # type: ignore[attr-defined]
        loader = DataLoader(train, batch_sampler=self.sampler, collate_fn=collate)
        loader = self.accelerator.prepare(loader)  # first: its length is this process's share
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.create_optimizer()
        steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
        scheduler = self.create_scheduler(optimizer, total_steps=cfg.epochs * steps_per_epoch)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        world = self.accelerator.num_processes
        logger.info(
            f"effective batch {cfg.batch_size * world * cfg.grad_accum}: {cfg.batch_size} per process x {world} "
            f"process(es) x {cfg.grad_accum} accumulated; {steps_per_epoch} optimizer steps per epoch"
        )
        return loader

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The batch's loss summed over its examples."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.model(**inputs).logits  # through the wrapper, so that gradients sync across processes
        weight = None if self.loss_weight is None else self.loss_weight.to(logits.device)
        return self.base_model.compute_loss(logits, batch["labels"], weight)

    def train_step(self, group: list[dict[str, Tensor]]) -> float:
        """One optimizer step over ``group`` (``grad_accum`` micro-batches). The loss is divided by the
        group's number of examples, so accumulation equals one large batch, a short last batch included."""
        n_examples = sum(batch["labels"].size(0) for batch in group)
        # Several processes average their gradients: divide by the examples of all of them over their number,
        # so that the step equals one process's step over all those examples.
        share = self._global_count(n_examples) / self.shard.world if self.shard.world > 1 else n_examples
        total = 0.0
        for i, batch in enumerate(group):
            sync = i == len(group) - 1
            with self.accelerator.no_sync(self.model) if not sync else nullcontext():
                loss = self.compute_loss(batch) / share
                self.accelerator.backward(loss)
            total += float(loss.detach())
        if not math.isfinite(total):
            raise BertLSTMError(
                f"training diverged: the loss became {total} (try a lower `lr` or `encoder_lr`); nothing was saved",
                "lr",
            )
        if self.config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.trainable_parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total * share  # this process's summed loss, for the epoch's running mean

    def _global_count(self, count: float) -> float:
        """``count`` summed over every process."""
        return float(self.accelerator.reduce(torch.tensor(float(count), device=self.accelerator.device), "sum"))

    def eval_step(self, dataset: Dataset) -> np.ndarray:
        """The model's outputs over ``dataset`` (``predict``'s: logits (N, C) by default), in dataset order;
        with several processes, each computes a share and every process gets them all."""
        batch, device = self.config.encode_batch_size, self.accelerator.device
        return sharded_outputs(self.base_model, dataset, batch, device, self.shard, self.predict)

    def evaluate(self, dataset: Dataset) -> dict[str, float]:
        """The scores of the model's outputs over ``dataset``; the outputs stay in ``dev_outputs``."""
        self.dev_outputs = self.eval_step(dataset)
        return self.score(self.dev_outputs, dataset)

    # --- the loop -------------------------------------------------------------------------------
    def threads(self, train: Dataset) -> AbstractContextManager[Any]:
        """Fewer CPU threads (``head_threads``) while only an LSTM and a head train on cached features: their
        small operations gain little from a second thread, and lose much (3x, BENCHMARKS.md) when another
        process holds a core."""
        small = self.base_model.encoder_frozen and getattr(train, "store", None) is not None
        n = self.config.head_threads
        if n is None or not small or self.accelerator.device.type != "cpu" or n >= torch.get_num_threads():
            return nullcontext()
        return cpu_threads(n)

    def fit(self, train: Dataset, dev: Dataset) -> list[dict[str, Any]]:
        """Train for ``epochs`` (fewer when a callback stops it); returns the history, one row per epoch."""
        loader = self.prepare(train)
        with self.threads(train):
            return self._epochs(loader, dev)

    def _epochs(self, loader: DataLoader, dev: Dataset) -> list[dict[str, Any]]:
        for callback in self.callbacks:
            callback.on_train_begin(self)
        for epoch in range(self.first_epoch, self.config.epochs + 1):
            self.sampler.epoch = epoch
            row = self.train_epoch(loader, epoch)
            start = time.perf_counter()
            row.update({f"dev_{k}": v for k, v in self.evaluate(dev).items()})
            row["eval_seconds"] = time.perf_counter() - start
            self.history.append(row)
            stops = [callback.on_epoch_end(self, row) for callback in self.callbacks]  # every one runs
            if any(stops):
                break
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def train_epoch(self, loader: DataLoader, epoch: int) -> dict[str, Any]:
        self.model.train()
        start, seen, total_loss = time.perf_counter(), 0, 0.0
        show = self.config.progress and self.accelerator.is_local_main_process
        bar = tqdm(
            total=len(loader),
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            leave=False,
            disable=None if show else True,  # None: tqdm draws the bar only when stderr is a terminal
        )
        for group in _groups(loader, self.config.grad_accum):
            total_loss += self.train_step(group)
            seen += sum(batch["labels"].size(0) for batch in group)
            bar.update(len(group))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", ex_s=f"{seen / (time.perf_counter() - start):.0f}")
        bar.close()
        seconds = time.perf_counter() - start
        if self.shard.world > 1:  # the epoch's loss and examples over every process
            total_loss, seen = self._global_count(total_loss), int(self._global_count(seen))
        return {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "train_seconds": seconds,
            "examples_per_s": seen / seconds,
        }

    # --- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, folder: Path, epoch: int) -> None:
        """Every process calls this: their random states are gathered, and the main process writes
        ``folder/state`` atomically (weights, optimizer, scheduler, each process's random states, history
        and the callbacks' tensors, such as the best weights so far)."""
        np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple form
        mine = {
            "torch": _torch_rng_state(),
            "python": _jsonable(random.getstate()),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        }
        everyone = self.shard.gather(mine)
        if self.shard.is_main:
            with atomic_folder(folder / "state") as tmp:
                save_file(self.base_model.trainable_state_dict(), str(tmp / "model.safetensors"))
                save_file(self._callback_tensors(), str(tmp / "callbacks.safetensors"))
                for rank, states in enumerate(everyone):
                    save_file(states["torch"], str(tmp / f"rng-{rank}.safetensors"))
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")  # tensors and plain values only
                state = {
                    "epoch": epoch,
                    "history": self.history,
                    "scheduler": self.scheduler.state_dict(),
                    "processes": len(everyone),
                    "python_rng": [states["python"] for states in everyone],
                    "numpy_rng": [states["numpy"] for states in everyone],
                }
                (tmp / "trainer_state.json").write_text(json.dumps(state))
        self.shard.barrier()  # nobody goes on before the checkpoint is complete

    def load_checkpoint(self, folder: Path) -> int:
        """Restore everything :meth:`save_checkpoint` wrote; returns the epoch it was taken after."""
        state_dir = folder / "state"
        try:
            state = json.loads((state_dir / "trainer_state.json").read_text())
            self.base_model.load_trainable_state_dict(load_file(str(state_dir / "model.safetensors")))
            callback_tensors = load_file(str(state_dir / "callbacks.safetensors"))
            rank = self.shard.rank
            if state.get("processes", 1) != self.shard.world:
                raise ValueError(f"it was written by {state.get('processes', 1)} process(es), not {self.shard.world}")
            rng = load_file(str(state_dir / f"rng-{rank}.safetensors"))
            # weights_only: a checkpoint is a file like any other and must not be able to run code
            self.optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
        except pickle.UnpicklingError:
            raise BertLSTMError(
                f"the checkpoint in {state_dir} cannot be resumed: optimizer.pt holds objects other than tensors, "
                "and loading them could run code"
            ) from None
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
            raise BertLSTMError(f"the checkpoint in {state_dir} cannot be resumed: {first_line(err)}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        for i, callback in enumerate(self.callbacks):
            prefix = f"{i}."
            callback.load_tensors({k[len(prefix) :]: v for k, v in callback_tensors.items() if k.startswith(prefix)})
        _set_torch_rng_state(rng)
        random.setstate(_tuples(state["python_rng"][rank]))
        name, keys, *rest = state["numpy_rng"][rank]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
        return int(state["epoch"])

    def _callback_tensors(self) -> dict[str, Tensor]:
        return {f"{i}.{k}": v for i, c in enumerate(self.callbacks) for k, v in c.tensors().items()}


def _torch_rng_state() -> dict[str, Tensor]:
    """The CPU generator's state and, when there are GPUs, each one's."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def _set_torch_rng_state(state: dict[str, Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = [state[f"cuda.{i}"] for i in range(len(state)) if f"cuda.{i}" in state]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif cuda:
        logger.warning("the checkpoint holds GPU random states this machine cannot use; resuming without them")


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
