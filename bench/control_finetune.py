"""Control experiment: the textbook fine-tune of the same encoder on SST-2, with no LSTM.

    python bench/control_finetune.py --head cls --lr 5e-5 [--seed 0] [--epochs 3] [--encoder DIR]

The encoder's [CLS] state (``--head cls``) or its mean over real tokens (``--head mean``) goes through dropout
0.1 into one linear layer; one AdamW (weight decay 0.01) trains everything at ``--lr`` with 10% linear warmup,
batch 32, plain shuffling. It shows what the encoder itself reaches, so that the BERT→LSTM figures can be read
against it: if this control lands where `bertlstm --mode finetune` lands, the ceiling is the encoder's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from bertlstm.data import load_labelled
from bertlstm.encoders import load_encoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class Control(nn.Module):
    def __init__(self, encoder: nn.Module, head: str, n_classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.dropout = nn.Dropout(0.1)
        self.out = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        if self.head == "cls":
            vector = hidden[:, 0]  # (B, H)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            vector = (hidden * mask).sum(1) / mask.sum(1)  # (B, H)
        return self.out(self.dropout(vector))  # (B, C)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", choices=["cls", "mean"], default="cls")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder, tokenizer = load_encoder(args.encoder)
    splits = {s: load_labelled(args.data / "sst2" / f"{s}.tsv") for s in ("train", "dev", "test")}
    names = sorted(set(splits["train"][1]))

    def batches(split: str, shuffle: bool) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        texts, labels = splits[split]
        order = torch.randperm(len(texts)).tolist() if shuffle else list(range(len(texts)))
        out = []
        for i in range(0, len(order), 32):
            rows = order[i : i + 32]
            enc = tokenizer(
                [texts[r] for r in rows], truncation=True, max_length=128, padding=True, return_tensors="pt"
            )
            out.append((dict(enc), torch.tensor([names.index(labels[r]) for r in rows])))
        return out

    def accuracy(split: str) -> float:
        model.eval()
        right = 0
        with torch.no_grad():
            for enc, y in batches(split, shuffle=False):
                logits = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
                right += int((logits.argmax(-1).cpu() == y).sum())
        return right / len(splits[split][0])

    model = Control(encoder, args.head, len(names)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * -(-len(splits["train"][0]) // 32)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    start, history = time.perf_counter(), []
    for epoch in range(1, args.epochs + 1):
        model.train()
        for enc, y in batches("train", shuffle=True):
            logits = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            loss = nn.functional.cross_entropy(logits, y.to(device))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        row = {"epoch": epoch, "dev_accuracy": accuracy("dev"), "test_accuracy": accuracy("test")}
        history.append(row)
        print(f"epoch {epoch}: dev {row['dev_accuracy']:.4f} test {row['test_accuracy']:.4f}", flush=True)
    best = max(history, key=lambda r: r["dev_accuracy"])
    minutes = (time.perf_counter() - start) / 60
    name = f"sst2 control head={args.head} lr={args.lr} seed={args.seed}"
    print(
        f"{name}: dev_accuracy {best['dev_accuracy']:.4f}  test_accuracy {best['test_accuracy']:.4f}  "
        f"(best epoch {best['epoch']}, {minutes:.1f} min)",
        flush=True,
    )
    print(json.dumps({"experiment": name, "minutes": minutes, "history": history}), flush=True)


if __name__ == "__main__":
    main()
