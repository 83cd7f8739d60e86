"""A small training loop with overridable steps; device placement and precision through Accelerate.

Each epoch can end with a checkpoint (model, optimizer, scheduler, RNG and the history so far), from which
:meth:`Trainer.fit` resumes a killed run with the same result as an uninterrupted one: the batch order
depends only on the seed and the epoch, and every random state is restored.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from scipy.special import expit
from torch import Tensor
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .config import TrainConfig
from .data import LengthGroupedBatches, sorted_batches
from .device import resolve_device
from .errors import BertLSTMError
from .metrics import multilabel_metrics, quick_metrics
from .model_folder import atomic_folder
from .modeling import BertLSTMModel


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An Accelerator for the requested device; ``auto`` lets Accelerate pick (cuda, mps, cpu)."""
    device = resolve_device(config.device)  # a clear error for a device that is not there
    return Accelerator(cpu=device.type == "cpu", mixed_precision=config.mixed_precision)


def predict_logits(model: BertLSTMModel, dataset: Dataset, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits (N, C) in dataset order; batches sorted by length so that little goes to padding.

    ``dataset`` is a :class:`~bertlstm.data.TokenDataset` or a cached-feature dataset: anything with
    ``lengths``, items and ``collate``.
    """
    out = np.zeros((len(dataset), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for rows in sorted_batches(dataset.lengths, batch_size):
            batch = dataset.collate([(dataset[i][0], None) for i in rows])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[rows] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


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
    """Trains a :class:`BertLSTMModel`, keeping the weights of the best epoch on dev.

    Override :meth:`compute_loss`, :meth:`train_step`, :meth:`evaluate` or :meth:`create_optimizer` to
    change one piece.
    """

    def __init__(
        self,
        model: BertLSTMModel,
        config: TrainConfig,
        accelerator: Accelerator | None = None,
        class_weights: Tensor | None = None,
    ):
        self.config = config
        self.accelerator = accelerator or make_accelerator(config)
        self.model = model  # after fit() starts: as prepared by Accelerate (wrapped, when distributed)
        self.base_model = model  # always the plain module
        self.class_weights = class_weights  # (C,) loss weight per class (pos_weight when multi-label)
        multi_label = model.config.multi_label
        self.metric = config.metric if config.metric != "auto" else ("macro_f1" if multi_label else "accuracy")
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.log: Callable[[str], None] = _log
        self.callbacks: list[Callable[[dict[str, Any]], None]] = []  # called with each epoch's history row

    # --- the pieces -------------------------------------------------------------------------
    def create_optimizer(self) -> Optimizer:
        """One AdamW; in ``finetune`` two parameter groups: encoder (low lr) and LSTM + head."""
        head = [p for n, p in self.model.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": head, "lr": self.config.lr, "weight_decay": self.config.weight_decay}]
        if not self.model.encoder_frozen:
            encoder = list(self.model.encoder.parameters())
            groups.insert(
                0,
                {"params": encoder, "lr": self.config.encoder_lr, "weight_decay": self.config.encoder_weight_decay},
            )
        return AdamW(groups, foreach=True)

    def create_scheduler(self, optimizer: Optimizer, total_steps: int) -> LambdaLR:
        """Linear warmup and decay when fine-tuning; a constant rate for the frozen recipes."""
        if self.model.encoder_frozen:
            return LambdaLR(optimizer, lambda step: 1.0)
        warmup = math.ceil(self.config.warmup_ratio * total_steps)
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The batch's loss summed over its examples (averaged over labels when multi-label)."""
        batch = dict(batch)
        labels = batch.pop("labels")
        logits = self.model(**batch).logits
        model = self.base_model
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = model.loss_fn(logits, labels, weight=weight, reduction="sum")
        return loss / logits.size(1) if model.config.multi_label else loss

    def train_step(self, group: list[dict[str, Tensor]]) -> float:
        """One optimizer step over ``group`` (``grad_accum`` micro-batches). The loss is divided by the
        group's number of examples, so accumulation equals one large batch, a short last batch included."""
        n_examples = sum(batch["labels"].size(0) for batch in group)
        total = 0.0
        for i, batch in enumerate(group):
            sync = i == len(group) - 1
            with self.accelerator.no_sync(self.model) if not sync else nullcontext():
                loss = self.compute_loss(batch) / n_examples
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
        return total * n_examples  # summed loss, for the epoch's running mean

    def evaluate(self, dataset: Dataset) -> dict[str, float]:
        model = self.base_model
        logits = predict_logits(model, dataset, self.config.encode_batch_size, self.accelerator.device)
        if model.config.multi_label:
            return multilabel_metrics(np.asarray(dataset.labels), expit(logits) >= 0.5)
        return quick_metrics(dataset.labels or [], logits.argmax(-1).tolist())

    # --- the loop ---------------------------------------------------------------------------
    def fit(self, train: Dataset, dev: Dataset, checkpoint_dir: str | Path | None = None) -> list[dict[str, Any]]:
        """Train; afterwards the model holds the best epoch's weights (by ``self.metric`` on dev).

        With ``checkpoint_dir``, a checkpoint is written there after every epoch, and a checkpoint already
        there is resumed from.
        """
        cfg = self.config
        sampler = LengthGroupedBatches(train.lengths, cfg.batch_size, cfg.seed)
        loader = DataLoader(train, batch_sampler=sampler, collate_fn=train.collate)
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.create_optimizer()
        steps_per_epoch = math.ceil(len(sampler) / cfg.grad_accum)
        scheduler = self.create_scheduler(optimizer, total_steps=cfg.epochs * steps_per_epoch)
        self.model, self.optimizer, loader, self.scheduler = self.accelerator.prepare(
            self.model, optimizer, loader, scheduler
        )
        first = 1
        if checkpoint_dir is not None and (Path(checkpoint_dir) / "state").is_dir():
            first = self.load_checkpoint(Path(checkpoint_dir)) + 1
            self.log(f"resumed from {checkpoint_dir} after epoch {first - 1}")
        for epoch in range(first, cfg.epochs + 1):
            sampler.epoch = epoch
            row = self._train_epoch(loader, epoch)
            start = time.perf_counter()
            row.update({f"dev_{k}": v for k, v in self.evaluate(dev).items()})
            row["eval_seconds"] = time.perf_counter() - start
            self.history.append(row)
            self.log(self._describe(row))
            for callback in self.callbacks:
                callback(row)
            if not self.best or row[f"dev_{self.metric}"] > self.best[f"dev_{self.metric}"]:
                self.best = {**row, "state": self._trainable_state()}
            if checkpoint_dir is not None and self.accelerator.is_main_process:
                self.save_checkpoint(Path(checkpoint_dir), epoch)
                self.log(f"checkpoint saved: epoch {epoch} -> {checkpoint_dir}")
            if cfg.patience and epoch - self.best["epoch"] >= cfg.patience:
                self.log(f"early stop: no better dev {self.metric} for {cfg.patience} epoch(s)")
                break
        self._restore(self.best.pop("state"))
        self.log(f"best epoch: {self.best['epoch']} (dev {self.metric} {self.best[f'dev_{self.metric}']:.4f})")
        return self.history

    def _describe(self, row: dict[str, Any]) -> str:
        scores = "  ".join(f"dev {k[4:].replace('_', '-')} {v:.4f}" for k, v in row.items() if k.startswith("dev_"))
        return (
            f"epoch {row['epoch']}/{self.config.epochs}: loss {row['train_loss']:.4f}  {scores}"
            f"  (train {row['train_seconds']:.1f}s, {row['examples_per_s']:.0f} ex/s; dev {row['eval_seconds']:.1f}s)"
        )

    def _train_epoch(self, loader: DataLoader, epoch: int) -> dict[str, Any]:
        self.model.train()
        start, seen, total_loss = time.perf_counter(), 0, 0.0
        bar = tqdm(
            total=len(loader),
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            disable=not (self.config.progress and self.accelerator.is_local_main_process),
            leave=False,
        )
        for group in _groups(loader, self.config.grad_accum):
            total_loss += self.train_step(group)
            seen += sum(batch["labels"].size(0) for batch in group)
            bar.update(len(group))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", ex_s=f"{seen / (time.perf_counter() - start):.0f}")
        bar.close()
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "train_seconds": seconds,
            "examples_per_s": seen / seconds,
        }

    # --- weights and checkpoints ----------------------------------------------------------------
    def _trainable_state(self) -> dict[str, Tensor]:
        """A CPU copy of what training changes (the frozen encoder never changes)."""
        model = self.base_model
        skip = "encoder." if model.encoder_frozen else None
        return {
            k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in model.state_dict().items()
            if skip is None or not k.startswith(skip)
        }

    def _restore(self, state: dict[str, Tensor]) -> None:
        model = self.base_model
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or not all(k.startswith("encoder.") for k in missing):
            raise BertLSTMError("checkpoint weights do not match the model")

    def save_checkpoint(self, folder: Path, epoch: int) -> None:
        """Write ``folder/state`` atomically: weights, best weights, optimizer, scheduler, RNG, history."""
        with atomic_folder(folder / "state") as tmp:
            save_file(self._trainable_state(), str(tmp / "model.safetensors"))
            save_file(self.best["state"], str(tmp / "best.safetensors"))
            save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")  # tensors + plain values only
            np_state = np.random.get_state()
            state = {
                "epoch": epoch,
                "history": self.history,
                "best": {k: v for k, v in self.best.items() if k != "state"},
                "scheduler": self.scheduler.state_dict(),
                "python_rng": _jsonable(random.getstate()),
                "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            }
            (tmp / "trainer_state.json").write_text(json.dumps(state))

    def load_checkpoint(self, folder: Path) -> int:
        """Restore everything :meth:`save_checkpoint` wrote; returns the epoch it was taken after."""
        state_dir = folder / "state"
        try:
            state = json.loads((state_dir / "trainer_state.json").read_text())
            self._restore(load_file(str(state_dir / "model.safetensors")))
            # weights_only: a checkpoint is a file like any other and must not be able to run code
            self.optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
        except pickle.UnpicklingError:
            raise BertLSTMError(
                f"the checkpoint in {state_dir} cannot be resumed: optimizer.pt holds objects other than tensors, "
                "and loading them could run code"
            ) from None
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BertLSTMError(f"the checkpoint in {state_dir} cannot be resumed: {first}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.best = {**state["best"], "state": load_file(str(state_dir / "best.safetensors"))}
        torch.set_rng_state(load_file(str(state_dir / "rng.safetensors"))["torch"])
        random.setstate(_tuples(state["python_rng"]))
        name, keys, *rest = state["numpy_rng"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
        return int(state["epoch"])


def _log(message: str) -> None:
    tqdm.write(message)
    sys.stdout.flush()  # a line such as "checkpoint saved" must be visible the moment it is true


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
