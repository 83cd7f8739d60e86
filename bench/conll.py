"""CoNLL-2003 named-entity recognition with the tagger (issue: token tagging).

    python bench/conll.py                              # every configuration below (about 70 min on 2 cores)
    python bench/conll.py --only frozen-last,frozen-last-crf --epochs 2     # a quick look

Entity-level micro-F1 (seqeval, IOB2) on dev and test, default encoder (uncased all-MiniLM-L6-v2), seed 0,
2-layer BiLSTM with 128 units per direction, first word piece per word, sentence context:
- frozen, ``--layers`` last / second-to-last / concat-last-4 / scalar-mix, each without and with the CRF
  (5 epochs, the feature cache on: the first configuration of each layer choice builds the cache, the second
  reads it), plus one epoch of each layer choice with the cache off (the encoder runs in the epoch);
- finetune (3 epochs, encoder lr 5e-5): BiLSTM without and with CRF, and a linear head with no LSTM (control);
  and the BiLSTM-CRF for 5 epochs;
- decoding speed on the test set: sentences/s of batched Viterbi against each word's best tag, from the same
  emissions, and of the whole prediction path with and without CRF.
Each line is also appended to bench/results/conll.jsonl as it completes. The best epoch is picked on dev.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
RESULTS = Path(__file__).resolve().parent / "results" / "conll.jsonl"
LAYERS = ("last", "second-to-last", "concat-last-4", "scalar-mix")
CONFIGS: dict[str, dict] = {}
for layers in LAYERS:
    CONFIGS[f"frozen-{layers}"] = {"layers": layers}
    CONFIGS[f"frozen-{layers}-crf"] = {"layers": layers, "crf": True}
for layers in LAYERS:
    CONFIGS[f"frozen-{layers}-nocache"] = {"layers": layers, "crf": True, "cache": False, "epochs": 1}
CONFIGS["finetune"] = {"mode": "finetune", "epochs": 3, "encoder_lr": 5e-5}
CONFIGS["finetune-crf"] = {"mode": "finetune", "epochs": 3, "encoder_lr": 5e-5, "crf": True}
CONFIGS["finetune-linear"] = {"mode": "finetune", "epochs": 3, "encoder_lr": 5e-5, "lstm_layers": 0}
CONFIGS["finetune-crf-5-epochs"] = {"mode": "finetune", "epochs": 5, "encoder_lr": 5e-5, "crf": True}


def decoding_speed(tagger, sentences) -> dict:
    """Sentences/s: batched Viterbi vs argmax over the same emissions, and the whole predict path."""
    import torch

    from bertlstm.core.batching import sorted_batches
    from bertlstm.core.inference import as_tensors

    model = tagger.model_
    dataset = tagger._dataset(sentences, "test")  # word pieces in windows, as the estimator reads them
    emissions = []
    with torch.inference_mode():
        for rows in sorted_batches(dataset.lengths, 256):
            batch = as_tensors(dataset.collate([(dataset[i][0], None) for i in rows]))
            emissions.append((model(**batch).logits, batch["word_counts"]))
        out = {}
        for name, decode in (
            ("viterbi", lambda e, c: model.decode(e, c)),
            ("argmax", lambda e, c: e.argmax(-1)),
        ):
            start = time.perf_counter()
            for e, c in emissions:
                decode(e, c)
            out[f"{name}_sentences_per_s"] = len(sentences) / (time.perf_counter() - start)
    start = time.perf_counter()
    tagger.predict(sentences)  # word pieces, encoder, LSTM and decoding
    out["predict_sentences_per_s"] = len(sentences) / (time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated configuration names (default: all)")
    parser.add_argument("--epochs", type=int, help="override every configuration's epochs")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not (args.data / "train.txt").is_file():
        raise SystemExit(f"skipped: CoNLL-2003 not found in {args.data}")
    os.environ.setdefault("BERTLSTM_CACHE", "/tmp/bench/cache")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # each epoch's line, on stderr
    from bertlstm.tasks.tag.data import read_tagged
    from bertlstm.tasks.tag.estimator import BertLSTMTagger

    train, dev, test = (read_tagged(args.data / f"{split}.txt") for split in ("train", "dev", "test"))
    print(f"CoNLL-2003: {len(train)} train, {len(dev)} dev, {len(test)} test sentences", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    names = args.only.split(",") if args.only else list(CONFIGS)
    for name in names:
        settings = {"epochs": 5, "progress": False, "seed": 0, **CONFIGS[name]}
        if args.epochs:
            settings["epochs"] = args.epochs
        start = time.perf_counter()
        tagger = BertLSTMTagger(**settings).fit(train, None, dev)
        fit_seconds = time.perf_counter() - start
        test_f1 = tagger.evaluate(test)["micro_f1"]
        epochs = [row["train_seconds"] for row in tagger.history_]
        row = {
            "config": name,
            "settings": {k: v for k, v in settings.items() if k != "progress"},
            "dev_f1": tagger.metrics_["dev_micro_f1"],
            "test_f1": test_f1,
            "best_epoch": tagger.metrics_["best_epoch"],
            "epoch_seconds": float(np.mean(epochs)),
            "prepare_seconds": tagger.metrics_["prepare_seconds"],  # tokenizing, and building/reading the cache
            "fit_seconds": fit_seconds,
        }
        if name in ("frozen-last", "frozen-last-crf", "finetune", "finetune-crf", "finetune-crf-5-epochs"):
            row.update(decoding_speed(tagger, test))
        print(
            f"{name:32s} dev F1 {100 * row['dev_f1']:.2f}  test F1 {100 * row['test_f1']:.2f}  "
            f"(best epoch {row['best_epoch']})  {row['epoch_seconds']:.1f}s/epoch  "
            f"prepare {row['prepare_seconds']:.1f}s  whole fit {fit_seconds:.0f}s"
            + (
                f"  viterbi {row['viterbi_sentences_per_s']:.0f} sent/s, argmax {row['argmax_sentences_per_s']:.0f}"
                if "viterbi_sentences_per_s" in row
                else ""
            ),
            flush=True,
        )
        with open(RESULTS, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
