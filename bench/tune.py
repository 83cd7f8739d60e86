"""The search over settings (issue #32) against the recipes users would pick by hand, and what the feature cache
saves it.

    python bench/tune.py sst2                 # 8,000 SST-2 sentences (random.Random(0).sample), full dev and test
    python bench/tune.py trec                 # TREC-6 train (10% held out as dev), test
    python bench/tune.py goemotions           # GoEmotions 8,000 training comments, full dev and test, multi-label
    python bench/tune.py sst2 --trials 30 --no-cache-trials 3
    python bench/tune.py sst2 --jobs 2,1       # the search with 2 processes of trials, then with 1, side by side

Each row is a whole ``bertlstm`` process, one after another, on this CPU, default encoder, frozen, seed 0:
- the default recipe (``train``, 5 epochs) with an empty feature cache: the wall time a search is compared to;
- ``--preset strong`` (5 epochs, the cache warm: only its accuracy counts here);
- ``tune --trials N`` with an empty feature cache: the whole search and the best trial's model saved, with
  tune's own default number of processes of trials (one per core) or, for each of ``--jobs A,B``, ``--jobs A``;
- the same search without the cache for its first ``--no-cache-trials`` trials (``--no-cache``: every trial runs
  the encoder in every epoch, as the Hugging Face Trainer's ``hyperparameter_search`` starts each trial from a
  fresh model), its time per trial scaled to N trials: what the cache saves, as a ratio.
Dev and test scores of each. The rows are appended to bench/results/tune.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "tune.jsonl"
BERTLSTM = [sys.executable, "-m", "bertlstm"]


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def files(task: str, folder: Path) -> tuple[list[str], list[str]]:
    """The task's data files (and options to read them), written to ``folder`` where a subset is needed."""
    if task == "sst2":
        train = pd.read_csv(DATA / "sst2" / "train.tsv", sep="\t", keep_default_na=False, quoting=3)
        rows = sorted(random.Random(0).sample(range(len(train)), 8000))
        train.iloc[rows].to_csv(folder / "train.tsv", sep="\t", index=False)
        given = ["--train", str(folder / "train.tsv"), "--dev", str(DATA / "sst2" / "dev.tsv")]
        return [*given, "--test", str(DATA / "sst2" / "test.tsv")], []
    if task == "trec":
        return ["--train", str(DATA / "trec" / "train.tsv"), "--test", str(DATA / "trec" / "test.tsv")], [
            "--dev-fraction",
            "0.1",
        ]
    train = pd.read_csv(DATA / "goemotions" / "train.tsv", sep="\t", keep_default_na=False, quoting=3)
    rows = sorted(random.Random(0).sample(range(len(train)), 8000))
    train.iloc[rows].to_csv(folder / "train.tsv", sep="\t", index=False)
    given = ["--train", str(folder / "train.tsv"), "--dev", str(DATA / "goemotions" / "dev.tsv")]
    given += ["--test", str(DATA / "goemotions" / "test.tsv"), "--label-column", "labels"]
    return given, ["--multi-label", "--label-separator", ","]


def run(argv: list[str], cache: Path) -> tuple[dict, float]:
    env = {**os.environ, "BERTLSTM_CACHE": str(cache), "BERTLSTM_GRAPHS": str(cache / "graphs")}
    start = time.perf_counter()
    result = subprocess.run([*BERTLSTM, *argv, "--json", "-q"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv[:2]}: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), seconds


def scores(metrics: dict) -> dict:
    keys = ("dev_accuracy", "test_accuracy", "dev_macro_f1", "test_macro_f1", "dev_micro_f1", "test_micro_f1")
    return {k: round(100 * metrics[k], 2) for k in keys if isinstance(metrics.get(k), float)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("sst2", "trec", "goemotions"))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--no-cache-trials", type=int, default=3)
    parser.add_argument("--jobs", help="comma-separated: a search row with each `tune --jobs` (default: tune's own)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix=f"tune-{args.task}-"))
    data, options = files(args.task, folder)
    common = [*data, *options, "--seed", "0", "--no-prepare-graph"]
    rows = []

    def record(name: str, metrics: dict, seconds: float, **more: object) -> None:
        row = {"task": args.task, "row": name, "seconds": round(seconds, 1), **scores(metrics), **more, "cpu": cpu()}
        rows.append(row)
        print(json.dumps(row), flush=True)

    cold = folder / "cache-default"
    metrics, seconds = run(["train", *common, "--epochs", "5", "--output", str(folder / "default")], cold)
    record("default recipe, cold cache", metrics, seconds)
    base = seconds
    metrics, seconds = run(
        ["train", *common, "--epochs", "5", "--preset", "strong", "--output", str(folder / "s")], cold
    )
    record("--preset strong", metrics, seconds)
    searched = 0.0
    for jobs in args.jobs.split(",") if args.jobs else [None]:
        given = ["--jobs", jobs] if jobs else []
        output = folder / f"best-{jobs or 'default'}"
        argv = ["tune", *common, "--trials", str(args.trials), *given, "--output", str(output)]
        metrics, seconds = run(argv, folder / f"cache-search-{jobs or 'default'}")
        search, searched = metrics.get("search", {}), searched or seconds
        record(
            f"tune, {args.trials} trials, cold cache" + (f", --jobs {jobs}" if jobs else ""),
            metrics,
            seconds,
            ratio_to_default=round(seconds / base, 2),
            best=search.get("best"),
            completed=search.get("completed"),
            pruned=search.get("pruned"),
            importances=search.get("importances"),
            processes=len({t["process"] for t in json.loads((output / "search.json").read_text())["trials"]}),
        )
    if args.no_cache_trials:
        argv = ["tune", *common, "--trials", str(args.no_cache_trials), "--no-cache", "--output", str(folder / "nc")]
        metrics, seconds = run(argv, folder / "cache-none")
        per_trial = seconds / args.no_cache_trials
        record(
            f"tune without the cache ({args.no_cache_trials} trials, scaled to {args.trials})",
            metrics,
            per_trial * args.trials,
            what_the_cache_saves=round(per_trial * args.trials / searched, 2),
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
