"""Frozen-recipe training speed, four ways, one run on one machine (issue: feature cache).

    python bench/train_speed.py                    # frozen and pooled, 8,000 SST-2 train sentences, full dev
    python bench/train_speed.py --modes frozen --n-train 2000 --epochs 2   # a quick look
    python bench/train_speed.py --encoder random-bert-base   # speed only: a randomly initialised BERT-base shape

Ways: (a) naive — the encoder runs every epoch on batches padded to max length 128 (the original recipe);
(b) per-batch padding, length-grouped batches, encoder every epoch; (c-cold) the feature cache, built on
the first pass; (c-warm) a second run that finds the cache. Each way runs in its own process (so peak RSS
is its own) with the same seed, data and hyper-parameters. Prints wall time per epoch (the first epoch
includes tokenizing and, for c-cold, building the cache), examples/s, peak RSS, dev accuracy and ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
WAYS = {
    "a-naive": {"cache": False, "pad_to_max_length": True},
    "b-per-batch": {"cache": False},
    "c-cold": {"cache": True},
    "c-warm": {"cache": True},
}


def run_one(args: argparse.Namespace) -> None:
    """In a child process: train one way and print one JSON line."""
    from bertlstm import BertLSTMClassifier
    from bertlstm.tasks.classify.data import load_labelled

    texts, labels = load_labelled(args.data / "train.tsv")
    rows = sorted(random.Random(0).sample(range(len(texts)), args.n_train))
    dev = load_labelled(args.data / "dev.tsv")
    clf = BertLSTMClassifier(
        encoder=args.encoder,
        mode=args.mode,
        epochs=args.epochs,
        seed=0,
        progress=False,
        device="cpu",
        cache_dir=args.cache_dir,
        **WAYS[args.one],
    )
    start = time.perf_counter()
    clf.fit([texts[i] for i in rows], [labels[i] for i in rows], *dev)
    total = time.perf_counter() - start
    epochs = [h["train_seconds"] + h["eval_seconds"] for h in clf.history_]
    epochs[0] += total - sum(epochs)  # loading, tokenizing, cache build: paid before the first epoch
    print(
        json.dumps(
            {
                "way": args.one,
                "mode": args.mode,
                "total_s": total,
                "epoch_s": epochs,
                "train_ex_s": [h["examples_per_s"] for h in clf.history_],
                "dev_accuracy": [h["dev_accuracy"] for h in clf.history_],
                "best_dev_accuracy": clf.metrics_["dev_accuracy"],
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="frozen,pooled")
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    parser.add_argument("--encoder", default="minilm", help="encoder; 'random-bert-base' times a BERT-base shape")
    parser.add_argument("--one", choices=list(WAYS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args)
    if not (args.data / "train.tsv").is_file():
        sys.exit(f"SST-2 not found at {args.data}; pass --data")
    results = []
    if args.encoder == "random-bert-base":
        args.encoder = random_bert_base(tempfile.mkdtemp(prefix="random-bert-base-"))
    for mode in args.modes.split(","):
        cache_dir = tempfile.mkdtemp(prefix="bertlstm-bench-cache-")  # cold for c-cold, then warm for c-warm
        for way in args.ways.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                way,
                "--mode",
                mode,
                "--n-train",
                str(args.n_train),
                "--epochs",
                str(args.epochs),
                "--encoder",
                args.encoder,
                "--data",
                str(args.data),
                "--cache-dir",
                cache_dir,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            results.append(result)
            print_row(result)
        shutil.rmtree(cache_dir, ignore_errors=True)
        print_ratios([r for r in results if r["mode"] == mode])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def random_bert_base(folder: str) -> str:
    """BERT-base's shape (12 layers, hidden 768) with random weights and MiniLM's (same) uncased vocabulary:
    its speed is BERT-base's; its accuracy means nothing."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bertlstm.core.encoder_names import resolve_encoder

    AutoTokenizer.from_pretrained(resolve_encoder("minilm")).save_pretrained(folder)
    BertModel(BertConfig()).save_pretrained(folder)  # BertConfig() defaults are bert-base-uncased's
    return folder


def print_row(r: dict) -> None:
    epochs = " ".join(f"{s:6.1f}" for s in r["epoch_s"])
    print(
        f"{r['mode']:<7} {r['way']:<12} total {r['total_s']:7.1f}s  epochs [{epochs}]s  "
        f"train {min(r['train_ex_s']):.0f}-{max(r['train_ex_s']):.0f} ex/s  peak RSS {r['peak_rss_mib']:.0f} MiB  "
        f"dev acc {r['best_dev_accuracy']:.4f} (last {r['dev_accuracy'][-1]:.4f})",
        flush=True,
    )


def print_ratios(rows: list[dict]) -> None:
    by = {r["way"]: r for r in rows}
    if {"a-naive", "c-cold"} <= set(by):
        print(f"  (a) total / (c-cold) total: {by['a-naive']['total_s'] / by['c-cold']['total_s']:.1f}x  (target >= 4)")
    if "c-cold" in by and len(by["c-cold"]["epoch_s"]) > 1:
        first, rest = by["c-cold"]["epoch_s"][0], by["c-cold"]["epoch_s"][1:]
        print(
            f"  (c-cold) first epoch / later epochs: {first / max(rest):.1f}x worst, "
            f"{first * len(rest) / sum(rest):.1f}x mean  (target >= 20)"
        )
    if {"a-naive", "c-warm"} <= set(by):
        print(
            f"  (a) total / (c-warm) total: {by['a-naive']['total_s'] / by['c-warm']['total_s']:.1f}x  (target >= 10)"
        )
    if {"a-naive", "b-per-batch"} <= set(by):
        print(f"  (a) total / (b) total: {by['a-naive']['total_s'] / by['b-per-batch']['total_s']:.1f}x")
    accs = [by[w]["best_dev_accuracy"] for w in by]
    print(f"  dev accuracy spread across ways: {100 * (max(accs) - min(accs)):.2f} points  (target <= 1)", flush=True)


if __name__ == "__main__":
    main()
