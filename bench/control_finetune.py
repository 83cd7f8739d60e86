"""Control experiment: the textbook fine-tune of the same encoder on SST-2, with no LSTM.

    python bench/control_finetune.py --head cls --lr 5e-5 [--seed 0] [--epochs 3] [--encoder DIR]

The encoder's [CLS] state (``--head cls``) or its mean over real tokens (``--head mean``) goes through dropout
0.1 into one linear layer; one AdamW (weight decay 0.01) trains everything at ``--lr`` with 10% linear warmup,
batch 32, gradient clipping 1.0, on bertlstm's own Trainer (length-grouped batches; the figures in
BENCHMARKS.md came from this script's earlier loop of its own, with plain shuffling). It shows what the encoder
itself reaches, so that the BERT→LSTM figures can be read against it: if this control lands where
`bertlstm --mode finetune` lands, the ceiling is the encoder's.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertlstm import TrainConfig
from bertlstm.core.callbacks import KeepBest, LogEpoch
from bertlstm.core.encoders import load_encoder
from bertlstm.core.inference import predict_logits
from bertlstm.core.modeling import mean_pool
from bertlstm.core.training import Trainer
from bertlstm.tasks.classify.data import TokenDataset, load_labelled, tokenize
from bertlstm.tasks.classify.metrics import quick_metrics
from bertlstm.tasks.classify.model import ClassifierOutput

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class Control(nn.Module):
    """Encoder → [CLS] or mean → dropout → linear, everything trained at one learning rate: the protocol
    :class:`bertlstm.core.training.TrainableModel` asks for, so the shared Trainer runs it."""

    encoder_frozen = False  # linear warmup and decay

    def __init__(self, encoder: nn.Module, head: str, n_classes: int) -> None:
        super().__init__()
        self.encoder, self.head, self.num_labels = encoder, head, n_classes
        self.dropout = nn.Dropout(0.1)
        self.out = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> ClassifierOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        vector = hidden[:, 0] if self.head == "cls" else mean_pool(hidden, attention_mask)  # (B, H)
        return ClassifierOutput(self.out(self.dropout(vector)))  # (B, C)

    def compute_loss(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        return nn.functional.cross_entropy(logits, labels, weight=weight, reduction="sum")

    def parameter_groups(self, training: TrainConfig) -> list[dict[str, Any]]:
        return [{"params": list(self.parameters()), "lr": training.lr, "weight_decay": training.weight_decay}]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", choices=["cls", "mean"], default="cls")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.manual_seed(args.seed)
    encoder, tokenizer = load_encoder(args.encoder)
    splits = {s: load_labelled(args.data / "sst2" / f"{s}.tsv") for s in ("train", "dev", "test")}
    names = sorted(set(splits["train"][1]))
    data = {
        split: TokenDataset(tokenize(tokenizer, texts, 128), [names.index(y) for y in labels], tokenizer.pad_token_id)
        for split, (texts, labels) in splits.items()
    }
    model = Control(encoder, args.head, len(names))
    config = TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=0.01, seed=args.seed, progress=False)

    def accuracy(logits: np.ndarray, dataset: TokenDataset) -> dict[str, float]:
        return {"accuracy": quick_metrics(dataset.labels, logits.argmax(-1).tolist())["accuracy"]}

    def test_accuracy(row: dict[str, Any]) -> None:  # reported beside dev, never used to choose
        logits = predict_logits(model, data["test"], 256, trainer.accelerator.device)
        row["test_accuracy"] = accuracy(logits, data["test"])["accuracy"]

    best = KeepBest("accuracy")
    trainer = Trainer(model, config, score=accuracy, callbacks=[test_accuracy, LogEpoch(), best])
    start = time.perf_counter()
    history = trainer.fit(data["train"], data["dev"])
    minutes = (time.perf_counter() - start) / 60
    name = f"sst2 control head={args.head} lr={args.lr} seed={args.seed}"
    print(
        f"{name}: dev_accuracy {best.best['dev_accuracy']:.4f}  test_accuracy {best.best['test_accuracy']:.4f}  "
        f"(best epoch {best.best['epoch']}, {minutes:.1f} min)",
        flush=True,
    )
    print(json.dumps({"experiment": name, "minutes": minutes, "history": history}), flush=True)


if __name__ == "__main__":
    main()
