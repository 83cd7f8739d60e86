"""Long documents on IMDB (issue: long documents): how long the reviews are, and what reading them whole gains.

    python bench/imdb.py lengths                                  # share of reviews over 128/256/512 word pieces
    python bench/imdb.py run --only truncate-128,chunks-256       # or every setting below (the default)
    python bench/imdb.py run --n-train 5000 --n-test 5000 --epochs 5 --seed 0
    python bench/imdb.py memory                                   # peak RSS of predict on one 50,000-word review

The reviews' ``<br />`` become spaces. A fixed seeded subset of train (``--n-train``, of which the classifier
holds out 10% as dev) and of test (``--n-test``) keeps a run within an hour on 2 cores; the settings are the
default frozen recipe (an LSTM of 64 over the last layer, feature cache on) with each way of reading a long
review: ``truncate`` at 128 and 512 word pieces, ``head-tail`` at 512 (128 + 382), and ``chunks`` (windows
of 128 or 256 pieces, each a mean-pooled vector, an LSTM over them), and as controls the ``pooled`` recipe (one
mean-pooled vector) over the first 512 pieces and over head + tail. Each setting prints test accuracy on the
whole test subset and on its reviews longer than 512 word pieces, the encoder passes (windows) per review, the
time to train (the cache's encoder pass included) and to predict 1,000 reviews, and appends a JSON line to
bench/results/imdb.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
RESULTS = Path(__file__).resolve().parent / "results" / "imdb.jsonl"
SETTINGS = {
    "truncate-128": {"max_length": 128},
    "truncate-512": {"max_length": 512},
    "head-tail-512": {"max_length": 512, "long_text": "head-tail"},
    "chunks-128": {"max_length": 128, "long_text": "chunks"},
    "chunks-256": {"max_length": 256, "long_text": "chunks"},
    # controls: one mean-pooled vector of the first 512 (or head + tail) pieces, the representation chunks
    # gives each window, so that what reading the whole review adds is seen apart from the representation
    "pooled-512": {"max_length": 512, "mode": "pooled"},
    "pooled-head-tail-512": {"max_length": 512, "mode": "pooled", "long_text": "head-tail"},
}


def reviews(split: str, n: int | None, seed: int) -> tuple[list[str], list[str]]:
    """A split's reviews (``<br />`` as spaces) and labels; with ``n``, a fixed seeded subset of them."""
    from bertlstm.tasks.classify.data import load_labelled

    texts, labels = load_labelled(DATA / f"{split}.jsonl.gz")
    rows = sorted(random.Random(seed).sample(range(len(texts)), n)) if n else range(len(texts))
    return [texts[i].replace("<br />", " ") for i in rows], [labels[i] for i in rows]


def piece_counts(texts: list[str]) -> np.ndarray:
    """Word pieces per text with the default encoder's tokenizer, [CLS] and [SEP] included."""
    from bertlstm.core.backends import plain_tokenizer
    from bertlstm.core.encoders import load_encoder

    tokenizer = plain_tokenizer(load_encoder("minilm")[1], None)
    return np.asarray([len(e.ids) for e in tokenizer.encode_batch(texts)])


def lengths(args: argparse.Namespace) -> None:
    for split in ("train", "test"):
        counts = piece_counts(reviews(split, None, args.seed)[0])
        over = "  ".join(f"> {n}: {100 * np.mean(counts > n):.1f}%" for n in (128, 256, 512))
        print(
            f"{split}: {len(counts)} reviews, median {np.median(counts):.0f} pieces, mean {counts.mean():.0f}; {over}"
        )


def run(args: argparse.Namespace) -> None:
    from bertlstm import BertLSTMClassifier, BertLSTMDocumentClassifier

    train, test = reviews("train", args.n_train, args.seed), reviews("test", args.n_test, args.seed)
    long = piece_counts(test[0]) > 512
    print(f"IMDB subsets: {len(train[0])} train (10% held out as dev), {len(test[0])} test ({long.sum()} > 512 pieces)")
    for name in args.only.split(",") if args.only else SETTINGS:
        settings = {"epochs": args.epochs, "seed": args.seed, "progress": False, **SETTINGS[name]}
        chunks = settings.get("long_text") == "chunks"
        cls = BertLSTMDocumentClassifier if chunks else BertLSTMClassifier
        start = time.perf_counter()
        clf = cls(**settings).fit(*train)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predicted = clf.predict(test[0])
        predict_seconds = time.perf_counter() - start
        right = predicted == np.asarray(test[1])
        windows = [len(d) for d in clf.predictor_.documents(test[0])] if chunks else [1] * len(test[0])
        row = {
            "setting": name,
            "settings": settings,
            "dev_accuracy": clf.metrics_["dev_accuracy"],
            "test_accuracy": float(right.mean()),
            "test_accuracy_over_512": float(right[long].mean()),
            "n_test": len(right),
            "n_over_512": int(long.sum()),
            "windows_per_review": float(np.mean(windows)),
            "fit_seconds": fit_seconds,
            "prepare_seconds": clf.metrics_["prepare_seconds"],
            "predict_seconds_per_1000": 1000 * predict_seconds / len(right),
        }
        print(
            f"{name:14s} test {100 * row['test_accuracy']:.2f}  over 512: {100 * row['test_accuracy_over_512']:.2f}  "
            f"(dev {100 * row['dev_accuracy']:.2f}, best epoch {clf.metrics_['best_epoch']})  "
            f"{row['windows_per_review']:.2f} windows/review  fit {fit_seconds:.0f}s (encoder pass "
            f"{row['prepare_seconds']:.0f}s)  predict {row['predict_seconds_per_1000']:.1f}s per 1,000",
            flush=True,
        )
        RESULTS.parent.mkdir(exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(row) + "\n")


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of ``bertlstm predict`` (a process of its own) on one document of 50,000 words, test reviews
    joined, with a chunks model of the default encoder (one epoch on the train subset's first 500 reviews)."""
    import subprocess
    import sys
    import tempfile

    from bertlstm import BertLSTMDocumentClassifier

    folder = Path(tempfile.mkdtemp(prefix="imdb-memory-"))
    texts, labels = reviews("train", 500, args.seed)
    clf = BertLSTMDocumentClassifier(max_length=256, epochs=1, progress=False).fit(texts, labels)
    clf.save_pretrained(folder / "model")
    words = " ".join(reviews("test", None, args.seed)[0]).split()[:50_000]
    (folder / "doc.txt").write_text(" ".join(words) + "\n")
    windows = len(clf.predictor_.documents([" ".join(words)])[0])
    predict = [sys.executable, "-m", "bertlstm", "predict", "--model", str(folder / "model"), "-q"]
    probe = (
        "import resource, subprocess, time; start = time.perf_counter(); "
        f"subprocess.run({predict!r}, stdin=open({str(folder / 'doc.txt')!r}), stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)"
    )
    peak_kib, seconds = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split()
    print(
        f"one {len(words):,}-word document, {windows} windows: predict peak RSS {int(peak_kib) / 2**20:.2f} GiB, "
        f"{float(seconds):.1f} s end to end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("lengths", "run", "memory"))
    parser.add_argument("--only", help="comma-separated settings (default: all)")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (DATA / "train.jsonl.gz").is_file():
        raise SystemExit(f"skipped: IMDB not found in {DATA}")
    os.environ.setdefault("BERTLSTM_CACHE", "/tmp/bench/cache-imdb")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # each epoch's line, on stderr
    {"lengths": lengths, "run": run, "memory": memory}[args.what](args)


if __name__ == "__main__":
    main()
