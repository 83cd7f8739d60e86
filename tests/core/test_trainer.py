"""The Trainer and its callbacks on a model that is not the classifier: what a new task or a benchmark reuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from bertlstm import TrainConfig
from bertlstm.core.callbacks import Callback, Checkpoint, EarlyStopping, KeepBest
from bertlstm.core.training import Trainer
from bertlstm.tasks.classify.data import TokenDataset
from bertlstm.tasks.classify.metrics import quick_metrics
from bertlstm.tasks.classify.model import ClassifierOutput


class BagOfWords(nn.Module):
    """The smallest model that honours the Trainer's protocol: mean word embedding → linear."""

    encoder_frozen = True

    def __init__(self, vocab: int = 20, classes: int = 2) -> None:
        super().__init__()
        self.num_labels = classes
        self.embed = nn.Embedding(vocab, 8)
        self.out = nn.Linear(8, classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> ClassifierOutput:
        mask = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        mean = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)  # (B, 8), real words only
        return ClassifierOutput(self.out(mean))

    def compute_loss(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        return nn.functional.cross_entropy(logits, labels, weight=weight, reduction="sum")

    def parameter_groups(self, training: TrainConfig) -> list[dict[str, Any]]:
        return [{"params": list(self.parameters()), "lr": training.lr, "weight_decay": training.weight_decay}]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state)


def toy(n: int, seed: int) -> TokenDataset:
    """Label 1 when the text holds word 3, with words 4..19 as noise."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        words = rng.integers(4, 20, size=rng.integers(2, 9)).tolist()
        if i % 2:
            words[rng.integers(len(words))] = 3
        rows.append(words)
        labels.append(i % 2)
    return TokenDataset(rows, labels)


def score(logits: np.ndarray, dataset: TokenDataset) -> dict[str, float]:
    return quick_metrics(dataset.labels, logits.argmax(-1).tolist())


def train(callbacks: list[Any], epochs: int = 6, **options: Any) -> tuple[Trainer, BagOfWords]:
    torch.manual_seed(0)
    model = BagOfWords()
    config = TrainConfig(epochs=epochs, lr=0.05, batch_size=16, device="cpu", progress=False, **options)
    trainer = Trainer(model, config, score=score, callbacks=callbacks)
    trainer.fit(toy(200, 1), toy(60, 2))
    return trainer, model


def test_the_trainer_trains_any_model_of_the_protocol() -> None:
    best = KeepBest("accuracy")
    trainer, model = train([best])
    losses = [row["train_loss"] for row in trainer.history]
    assert losses[-1] < losses[0] / 2 and best.best["dev_accuracy"] > 0.9
    assert best.best["epoch"] == max(trainer.history, key=lambda r: r["dev_accuracy"])["epoch"]
    for key, value in best.weights.items():  # the best epoch's weights are what the model holds
        torch.testing.assert_close(model.state_dict()[key], value)


def test_early_stopping_and_plain_function_callbacks() -> None:
    rows: list[dict[str, Any]] = []
    trainer, _ = train([KeepBest("accuracy"), rows.append, EarlyStopping("accuracy", patience=1)], epochs=20)
    assert rows == trainer.history and len(rows) < 20  # stopped one epoch after the dev accuracy stopped rising
    best_epoch = max(rows, key=lambda r: r["dev_accuracy"])["epoch"]
    assert rows[-1]["epoch"] == best_epoch + 1


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt  # as a killed run
        return False


def test_a_checkpoint_waits_for_its_minutes(tmp_path: Path) -> None:
    """Epochs of a few seconds do not each write a checkpoint: one is due once the minutes have passed."""
    now = [0.0]
    saved: list[int] = []

    class Clocked(Checkpoint):
        def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> bool:
            now[0] += 40.0  # each epoch takes 40 s on this clock
            super().on_epoch_end(trainer, row)
            state = self.folder / "state" / "trainer_state.json"
            if state.is_file() and json.loads(state.read_text())["epoch"] == row["epoch"]:
                saved.append(row["epoch"])  # written at this epoch's end
            return False

    train([Clocked(tmp_path / "c", minutes=1.5, clock=lambda: now[0])], epochs=6)
    assert saved == [3, 6]  # at 120 s and 240 s: 90 s had passed since the last
    saved.clear()
    train([Clocked(tmp_path / "d", clock=lambda: now[0])], epochs=3)
    assert saved == [1, 2, 3]  # 0 minutes: after every epoch


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    whole, whole_model = train([KeepBest("accuracy"), Checkpoint(tmp_path / "a")], epochs=4)
    with pytest.raises(KeyboardInterrupt):
        train([KeepBest("accuracy"), Checkpoint(tmp_path / "b"), StopAfter(2)], epochs=4)
    torch.manual_seed(123)  # resuming restores every random state, whatever the process did before
    resumed, resumed_model = train([KeepBest("accuracy"), Checkpoint(tmp_path / "b")], epochs=4)
    strip = ("train_seconds", "eval_seconds", "examples_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in strip} for r in whole.history
    ]
    for key, value in whole_model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, atol=0, rtol=0)
