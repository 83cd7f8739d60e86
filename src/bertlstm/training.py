"""A small training loop with overridable steps; device placement and precision through Accelerate."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import Tensor
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .config import TrainConfig
from .data import LengthGroupedBatches, sorted_batches
from .errors import BertLSTMError
from .metrics import quick_metrics
from .modeling import BertLSTMModel


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An Accelerator for the requested device; ``auto`` lets Accelerate pick (cuda, mps, cpu)."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise BertLSTMError("--device cuda was asked for, but no CUDA GPU is available")
    if config.device == "mps" and not torch.backends.mps.is_available():
        raise BertLSTMError("--device mps was asked for, but MPS is not available")
    return Accelerator(cpu=config.device == "cpu", mixed_precision=config.mixed_precision)


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
            batch = dataset.collate([(dataset[i][0], -1) for i in rows])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[rows] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


class Trainer:
    """Trains a :class:`BertLSTMModel`, keeping the weights of the best epoch on dev.

    Override :meth:`compute_loss`, :meth:`train_step` or :meth:`create_optimizer` to change one piece.
    """

    def __init__(self, model: BertLSTMModel, config: TrainConfig, accelerator: Accelerator | None = None):
        self.config = config
        self.accelerator = accelerator or make_accelerator(config)
        self.model = model
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.log: Callable[[str], None] = tqdm.write

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
        return AdamW(groups)

    def create_scheduler(self, optimizer: Optimizer, total_steps: int) -> LambdaLR:
        """Linear warmup and decay when fine-tuning; a constant rate for the frozen recipes."""
        if self.model.encoder_frozen:
            return LambdaLR(optimizer, lambda step: 1.0)
        warmup = math.ceil(self.config.warmup_ratio * total_steps)
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(**batch).loss

    def train_step(self, batch: dict[str, Tensor]) -> float:
        loss = self.compute_loss(batch)
        self.accelerator.backward(loss)
        if self.config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.trainable_parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def evaluate(self, dataset: Dataset) -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        logits = predict_logits(model, dataset, self.config.encode_batch_size, self.accelerator.device)
        return quick_metrics(dataset.labels or [], logits.argmax(-1).tolist())

    # --- the loop ---------------------------------------------------------------------------
    def fit(self, train: Dataset, dev: Dataset) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` epochs; afterwards the model holds the best epoch's weights."""
        cfg = self.config
        sampler = LengthGroupedBatches(train.lengths, cfg.batch_size, cfg.seed)
        loader = DataLoader(train, batch_sampler=sampler, collate_fn=train.collate)
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.create_optimizer()
        scheduler = self.create_scheduler(optimizer, total_steps=cfg.epochs * len(sampler))
        self.model, self.optimizer, loader, self.scheduler = self.accelerator.prepare(
            self.model, optimizer, loader, scheduler
        )
        for epoch in range(1, cfg.epochs + 1):
            sampler.epoch = epoch
            row = self._train_epoch(loader, epoch, len(train))
            start = time.perf_counter()
            row.update({f"dev_{k}": v for k, v in self.evaluate(dev).items()})
            row["eval_seconds"] = time.perf_counter() - start
            self.history.append(row)
            self.log(
                f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f}  dev accuracy {row['dev_accuracy']:.4f}"
                f"  dev macro-F1 {row['dev_macro_f1']:.4f}  (train {row['train_seconds']:.1f}s,"
                f" {row['examples_per_s']:.0f} ex/s; dev {row['eval_seconds']:.1f}s)"
            )
            if not self.best or row["dev_accuracy"] > self.best["dev_accuracy"]:
                self.best = {**row, "state": self._trainable_state()}
        self._restore(self.best.pop("state"))
        self.log(f"best epoch: {self.best['epoch']} (dev accuracy {self.best['dev_accuracy']:.4f})")
        return self.history

    def _train_epoch(self, loader: DataLoader, epoch: int, n_examples: int) -> dict[str, Any]:
        self.model.train()
        start, seen, total_loss = time.perf_counter(), 0, 0.0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            disable=not (self.config.progress and self.accelerator.is_local_main_process),
            leave=False,
        )
        for batch in bar:
            size = batch["labels"].size(0)
            total_loss += self.train_step(batch) * size
            seen += size
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", ex_s=f"{seen / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "train_seconds": seconds,
            "examples_per_s": seen / seconds,
        }

    def _trainable_state(self) -> dict[str, Tensor]:
        """A CPU copy of what training changes (the frozen encoder never changes)."""
        model = self.accelerator.unwrap_model(self.model)
        skip = "encoder." if model.encoder_frozen else None
        return {
            k: v.detach().to("cpu", copy=True)
            for k, v in model.state_dict().items()
            if skip is None or not k.startswith(skip)
        }

    def _restore(self, state: dict[str, Tensor]) -> None:
        model = self.accelerator.unwrap_model(self.model)
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("encoder.") for k in missing)
