"""What a frozen run costs besides its epochs, measured in one run on one machine (issue: fine-tune accuracy at
frozen cost).

    python bench/frozen_cost.py                          # every part below
    python bench/frozen_cost.py --only feature-pass      # or run-cost, cache-bar, threads

1. feature-pass: building the cache of a fixed 8,000-sentence SST-2 subset (``random.Random(0).sample``, as
   bench/train_speed.py) with the fp32 encoder and with each ``feature_pass`` of --passes (int8, and bf16 where
   the CPU has it natively), twice each, alternating; the largest difference from the fp32 entry's features;
   the frozen default recipe (5 epochs, seed 0) trained on each, scored on SST-2 dev and on TREC-6 test (dev: 10%
   of train) through the saved model (fp32 encoder).
2. run-cost: ``bertlstm train`` of the frozen recipe on the same subset, 3 epochs, full SST-2 dev, as a whole
   process: cold cache, then warm, with the wall time split into import, loading, preparing (tokenizing, cache),
   epochs, saving and the rest.
3. cache-bar: ``bertlstm train`` of the frozen recipe on a 4,000-sentence subset, 5 epochs, full SST-2 dev, as a
   whole process each: without the cache, with a cold cache, with a warm one; the ratios, and the warm run against
   the sum of its own epochs (train and dev, as it logs them).
4. threads: cached epochs (the LSTM alone) and the encoder pass with 1 and 2 intra-op threads, alone and beside
   a process that keeps one core busy.

Data come from ../shared/data (see its README); every run uses the default encoder.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def sst2_subset(data: Path, n: int) -> tuple[tuple[list[str], list], tuple[list[str], list]]:
    from bertlstm.tasks.classify.data import load_labelled

    texts, labels = load_labelled(data / "sst2" / "train.tsv")
    rows = sorted(random.Random(0).sample(range(len(texts)), n))
    return ([texts[i] for i in rows], [labels[i] for i in rows]), load_labelled(data / "sst2" / "dev.tsv")


# --- 1. the feature pass --------------------------------------------------------------------------------
def feature_pass(args: argparse.Namespace) -> None:
    import torch

    from bertlstm import BertLSTMClassifier, BertLSTMModel, ModelConfig
    from bertlstm.core.config import TrainConfig
    from bertlstm.core.encoders import load_encoder
    from bertlstm.core.feature_cache import model_features
    from bertlstm.core.modeling import native_bf16
    from bertlstm.tasks.classify.data import load_labelled, tokenize

    ways = ["fp32", *(w for w in args.passes.split(",") if w != "fp32")]
    if "bf16" in ways and not native_bf16(torch.device("cpu")):
        print("bf16 skipped: this CPU has neither AVX512-BF16 nor AMX")
        ways.remove("bf16")
    (texts, _), dev = sst2_subset(args.data, args.n_train)
    encoder, tokenizer = load_encoder("minilm")
    model = BertLSTMModel(ModelConfig(), encoder, 2).eval()
    ids = tokenize(tokenizer, texts, 128)
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    stores = {}
    for _ in range(2):
        for way in ways:
            training = TrainConfig(cache_dir=tempfile.mkdtemp(prefix="bench-pass-"), feature_pass=way)
            start = time.perf_counter()
            store = model_features(model, tokenizer, texts, lambda: ids, training, torch.device("cpu"), "t")
            seconds[way].append(time.perf_counter() - start)
            stores[way] = store
    scale = max(float(np.abs(stores["fp32"][i]).max()) for i in range(len(texts)))
    for way, s in seconds.items():
        print(f"cache build {way}: {', '.join(f'{x:.1f}' for x in s)} s ({len(texts) / min(s):.0f} texts/s at best)")
    for way in ways[1:]:
        diff = max(
            float(np.abs(stores["fp32"][i].astype(np.float32) - stores[way][i]).max()) for i in range(len(texts))
        )
        ratio = np.mean(seconds["fp32"]) / np.mean(seconds[way])
        gap = f"features max |fp32 - {way}| {diff:.4f} (max |x| {scale:.2f})"
        print(f"{way} / fp32 speed: {ratio:.2f}x (mean of 2); {gap}")

    trec_train, trec_test = (load_labelled(args.data / "trec" / f"{s}.tsv", "text", "label") for s in ("train", "test"))
    for name, train, scored, metric in (
        ("SST-2 dev", sst2_subset(args.data, args.n_train)[0], dev, "dev"),
        ("TREC-6 test", trec_train, trec_test, "test"),
    ):
        scores = {}
        for way in ways:
            clf = BertLSTMClassifier(
                feature_pass=way, seed=0, progress=False, device="cpu", cache_dir=tempfile.mkdtemp(prefix="bench-acc-")
            )
            clf.fit(*train, *(scored if metric == "dev" else ()))
            scores[way] = tuple(100 * x for x in (clf.evaluate(*scored)["accuracy"], clf.metrics_["dev_accuracy"]))
        fp32, fp32_dev = scores["fp32"]
        for way in ways[1:]:
            other, other_dev = scores[way]
            print(
                f"{name}, frozen default, 5 epochs: trained on fp32 features {fp32:.2f}, on {way} features {other:.2f} "
                f"(change {other - fp32:+.2f}; dev during training {fp32_dev:.2f} / {other_dev:.2f})",
                flush=True,
            )


# --- 2. the fixed cost of a run ---------------------------------------------------------------------------
PHASES = {  # phase -> functions (file suffix, name) whose cumulative times add up to it
    "read data": [("data.py", "load_labelled")],
    "load encoder (and import transformers)": [("encoders.py", "load_encoder"), ("encoders.py", "open_encoder")],
    "tokenize": [("data.py", "__call__")],
    "hash encoder and texts": [
        ("feature_cache.py", "encoder_fingerprint"),  # before the encoders module kept it
        ("encoders.py", "encoder_fingerprint"),
        ("feature_cache.py", "texts_fingerprint"),
    ],
    "cache: encode and write": [("feature_cache.py", "build")],
    "cache: open and verify": [("feature_cache.py", "open")],
    "epochs (train + dev)": [("training.py", "train_epoch"), ("training.py", "evaluate")],
    "checkpoints": [("callbacks.py", "on_epoch_end")],
    "final dev pass": [("estimator.py", "_after_fit")],
    "create the optimizer (torch imports its compiler)": [("training.py", "create_optimizer")],
    "save model folder": [("model_folder.py", "save_trained")],
    "plots": [("reports.py", "write_plots")],
}


def run_child(argv: list[str]) -> None:
    """In a child process: import what a run imports, then run the command line under cProfile; one JSON line."""
    start = time.perf_counter()
    import cProfile
    import pstats

    import bertlstm.cli as cli
    import bertlstm.core.training  # noqa: F401  what `bertlstm train` imports before its first step
    import bertlstm.tasks.classify.estimator  # noqa: F401

    imported = time.perf_counter()
    profile = cProfile.Profile()
    profile.enable()
    cli.main(argv)
    profile.disable()
    done = time.perf_counter()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    phases = {"imports": imported - start}
    for phase, functions in PHASES.items():
        phases[phase] = sum(
            row[3] for (file, _, name), row in stats.items() if (file.rsplit("/", 1)[-1], name) in functions
        )
    phases["everything else"] = done - start - sum(phases.values())
    print(json.dumps({"phases": phases, "in_process": done - start}))


def run_cost(args: argparse.Namespace) -> None:
    """`bertlstm train`, frozen, 3 epochs, cold then warm cache; with --baseline SRC the same with that source."""
    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    (texts, labels), (dev_texts, dev_labels) = sst2_subset(args.data, args.n_train)
    import pandas as pd

    pd.DataFrame({"text": texts, "label": labels}).to_csv(work / "train.csv", index=False)
    pd.DataFrame({"text": dev_texts, "label": dev_labels}).to_csv(work / "dev.csv", index=False)
    argv = ["train", "--train", str(work / "train.csv"), "--dev", str(work / "dev.csv"), "--epochs", "3"]
    sources = {"now": str(Path(__file__).resolve().parents[1] / "src")}
    if args.baseline:
        sources = {"before": str(Path(args.baseline).resolve()), **sources}
    rows = {}
    for name, src in sources.items():
        cache = tempfile.mkdtemp(prefix="bench-run-cache-")
        for warmth in ("cold", "warm"):
            for profiled in (False, True):
                if profiled and warmth == "cold":  # a second cold run needs an empty cache
                    cache_now = tempfile.mkdtemp(prefix="bench-run-cache-")
                else:
                    cache_now = cache
                out = str(work / f"model-{name}-{warmth}-{profiled}")
                env = {**os.environ, "PYTHONPATH": src, "BERTLSTM_CACHE": cache_now}
                cmd = [sys.executable, "-m", "bertlstm", *argv, "--output", out, "--no-progress"]
                if profiled:
                    cmd = [sys.executable, __file__, "--child", json.dumps([*argv, "--output", out, "--no-progress"])]
                start = time.perf_counter()
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if done.returncode:
                    sys.exit(f"{name} {warmth} failed:\n{done.stderr[-3000:]}")
                if profiled:
                    rows[name, warmth]["phases"] = json.loads(done.stdout.strip().splitlines()[-1])["phases"]
                else:
                    times = re.findall(r"\(train ([0-9.]+)s.*; dev ([0-9.]+)s\)", done.stderr)
                    epochs = sum(float(train) + float(dev) for train, dev in times)
                    encoder = sum(float(x) for x in re.findall(r"feature cache: encoded .* in ([0-9.]+)s", done.stderr))
                    rows[name, warmth] = {"wall": wall, "epochs": epochs}
                    print(
                        f"{name:6} {warmth}: whole process {wall:5.1f} s = encoder pass {encoder:.1f} s + epochs "
                        f"(train and dev) {epochs:.1f} s + fixed cost {wall - encoder - epochs:.1f} s"
                    )
    columns = list(rows)
    print(f"{'phase (profiled run)':50}" + "".join(f"{n + ' ' + w:>14}" for n, w in columns))
    for phase in rows[columns[0]]["phases"]:
        print(f"{phase[:50]:50}" + "".join(f"{rows[c]['phases'].get(phase, 0.0):14.1f}" for c in columns))
    for warmth in ("cold", "warm"):
        if ("before", warmth) in rows:
            before, now = rows["before", warmth]["wall"], rows["now", warmth]["wall"]
            print(f"{warmth} run: {before:.1f} s before, {now:.1f} s now ({before / now:.2f}x)")


# --- 3. the cache bar --------------------------------------------------------------------------------------
def cache_bar(args: argparse.Namespace) -> None:
    """No cache, cold, warm, and cold with ``--feature-pass auto`` (the fastest pass this machine computes
    natively, in a cache of its own): 4k SST-2, 5 epochs, each a whole process, one after the other."""
    work = Path(tempfile.mkdtemp(prefix="bench-bar-"))
    (texts, labels), _ = sst2_subset(args.data, 4000)
    import pandas as pd

    pd.DataFrame({"text": texts, "label": labels}).to_csv(work / "4k.csv", index=False)
    dev = args.data / "sst2" / "dev.tsv"
    env = {**os.environ, "BERTLSTM_CACHE": tempfile.mkdtemp(prefix="bench-bar-cache-")}
    walls = {}
    rows = (("no cache", ["--no-cache"]), ("cold", []), ("warm", []), ("cold auto", ["--feature-pass", "auto"]))
    for way, extra in rows:
        if way == "cold auto":
            env["BERTLSTM_CACHE"] = tempfile.mkdtemp(prefix="bench-bar-cache-auto-")
        argv = ["train", "--train", str(work / "4k.csv"), "--dev", str(dev), "--epochs", "5", "--no-progress"]
        cmd = [sys.executable, "-m", "bertlstm", *argv, "--output", str(work / "model"), "--overwrite", *extra]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls[way] = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{way} failed:\n{done.stderr[-3000:]}")
        epochs = sum(float(t) + float(d) for t, d in re.findall(r"\(train ([0-9.]+)s.*; dev ([0-9.]+)s\)", done.stderr))
        accuracy = re.findall(r"best epoch: \d+ \(dev accuracy ([0-9.]+)\)", done.stderr)
        chosen = "".join(f" (feature pass {w})" for w in re.findall(r"feature pass (\w+) \(auto", done.stderr))
        print(
            f"{way + chosen:8}: whole process {walls[way]:6.1f} s; its epochs {epochs:5.1f} s "
            f"(whole / epochs {walls[way] / epochs:.2f}x); best dev accuracy {accuracy}",
            flush=True,
        )
    print(
        f"no cache / cold {walls['no cache'] / walls['cold']:.2f}x (bar 3x); "
        f"no cache / warm {walls['no cache'] / walls['warm']:.2f}x (bar 6x); "
        f"no cache / cold with --feature-pass auto {walls['no cache'] / walls['cold auto']:.2f}x"
    )


# --- 4. threads -----------------------------------------------------------------------------------------
def _busy(stop: multiprocessing.synchronize.Event) -> None:
    """A neighbour: keeps one core busy until told to stop."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def threads(args: argparse.Namespace) -> None:
    import torch

    from bertlstm import BertLSTMClassifier
    from bertlstm.core.batching import pad_batch, sorted_batches
    from bertlstm.tasks.classify.data import tokenize

    (texts, labels), dev = sst2_subset(args.data, args.n_train)
    cache = tempfile.mkdtemp(prefix="bench-threads-")
    clf = BertLSTMClassifier(epochs=1, seed=0, progress=False, device="cpu", cache_dir=cache).fit(texts, labels, *dev)
    sample = tokenize(clf.tokenizer_, texts[:2000], 128)
    encoder = clf.model_.encoder

    def epoch() -> float:  # one cached epoch of the frozen default recipe (the cache is warm), threads as set
        run = BertLSTMClassifier(epochs=1, seed=0, progress=False, device="cpu", cache_dir=cache, head_threads=None)
        return run.fit(texts, labels, *dev).history_[0]["train_seconds"]

    def encode() -> float:  # the encoder pass over 2,000 texts, sorted batches of 256
        start = time.perf_counter()
        with torch.inference_mode():
            for rows in sorted_batches([len(s) for s in sample], 256):
                encoder(*map(torch.from_numpy, pad_batch([sample[i] for i in rows], 0)))
        return time.perf_counter() - start

    results = {}
    for neighbour in (False, True):
        stop = multiprocessing.Event()
        busy = multiprocessing.Process(target=_busy, args=(stop,), daemon=True) if neighbour else None
        if busy:
            busy.start()
        for n in (1, 2):
            torch.set_num_threads(n)
            for what, job in (("cached epoch", epoch), ("encoder pass", encode)):
                results[what, n, neighbour] = job()
        if busy:
            stop.set()
            busy.join()
    torch.set_num_threads(2)
    for what in ("cached epoch", "encoder pass"):
        for neighbour in (False, True):
            one, two = results[what, 1, neighbour], results[what, 2, neighbour]
            where = "beside a busy process" if neighbour else "alone"
            print(f"{what:13} {where:22}: 1 thread {one:6.2f} s, 2 threads {two:6.2f} s  (2 / 1: {two / one:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="feature-pass,run-cost,cache-bar,threads")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--baseline", help="run-cost: also time this source folder (a checkout's src) as 'before'")
    parser.add_argument("--passes", default="fp32,int8,bf16", help="feature-pass: the ways compared with fp32")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(json.loads(args.child))
    if not (args.data / "sst2" / "train.tsv").is_file():
        sys.exit(f"SST-2 not found under {args.data}; pass --data")
    parts = {"feature-pass": feature_pass, "run-cost": run_cost, "cache-bar": cache_bar, "threads": threads}
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        parts[name](args)


if __name__ == "__main__":
    main()
