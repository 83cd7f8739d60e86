"""One process or two (torchrun, gloo) on this machine's two cores (issue: training beyond one process).

    python bench/ddp_speed.py                 # finetune 1 epoch on 8,000 SST-2 sentences; cache builds
    python bench/ddp_speed.py --n-train 2000 --seeds 0  # a quick look

1. `finetune`, one epoch on the fixed 8,000-sentence SST-2 subset (`random.Random(0).sample`, as
   bench/train_speed.py), full dev: one process with 2 threads and batch 32, against `torchrun
   --nproc-per-node 2` with 1 thread each and batch 16 per process (the same effective batch of 32, so that the
   two runs train alike): wall time of the whole command and dev accuracy, for each seed (default 0, 1, 2:
   one seed's gap is mostly the noise of a different batch order and dropout, so the means are compared).
2. The feature cache built cold by one process (2 threads) and by two (1 thread each), `frozen`, 1 epoch.
Every run is a fresh process with its own empty cache folder; the commands are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def subset(data: Path, n: int, folder: Path) -> Path:
    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines()
    rows = sorted(random.Random(0).sample(range(1, len(lines)), n))
    path = folder / "train.tsv"
    path.write_text("\n".join([lines[0]] + [lines[i] for i in rows]) + "\n", encoding="utf-8")
    return path


def run(command: list[str], threads: int, cache: Path) -> tuple[float, dict, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "BERTLSTM_CACHE": str(cache)}
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return seconds, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train = subset(args.data, args.n_train, tmp)
        base = ["-m", "bertlstm", "train", "--train", str(train), "--dev", str(args.data / "dev.tsv"), "--epochs"]
        base += ["1", "--device", "cpu", "--no-progress", "--json"]
        finetune = [*base, "--mode", "finetune", "--encoder-lr", "5e-5"]
        results: dict[str, list[tuple[float, float]]] = {"one": [], "two": []}
        for seed in [int(s) for s in args.seeds.split(",")]:
            one, two = tmp / f"one-{seed}", tmp / f"two-{seed}"
            seeded = [*finetune, "--seed", str(seed)]
            for key, command, threads in (
                ("one", [sys.executable, *seeded, "--batch-size", "32", "--output", str(one)], 2),
                ("two", [*TORCHRUN, *seeded, "--batch-size", "16", "--output", str(two)], 1),
            ):
                seconds, metrics, _ = run(command, threads, tmp / f"c-{key}-{seed}")
                results[key].append((seconds, 100 * metrics["dev_accuracy"]))
            (t1, a1), (t2, a2) = results["one"][-1], results["two"][-1]
            print(
                f"seed {seed}: 1 process x 2 threads {t1:.1f}s, dev {a1:.2f}; 2 processes x 1 thread {t2:.1f}s, "
                f"dev {a2:.2f}; time ratio one/two {t1 / t2:.2f}x, gap {a2 - a1:+.2f} points",
                flush=True,
            )
        (t1, a1), (t2, a2) = (np.mean(results[key], axis=0) for key in ("one", "two"))
        s1, s2 = (np.std([acc for _, acc in results[key]]) for key in ("one", "two"))
        print(
            f"finetune, mean over seeds: 1 process {t1:.1f}s dev {a1:.2f} ± {s1:.2f}; 2 processes {t2:.1f}s "
            f"dev {a2:.2f} ± {s2:.2f}; time ratio one/two {t1 / t2:.2f}x; gap of means {a2 - a1:+.2f} points"
        )
        base += ["--seed", "0"]
        frozen = [*base, "--mode", "frozen"]
        cold = {}
        for name, command, threads in (
            ("1 process x 2 threads", [sys.executable, *frozen], 2),
            ("2 processes x 1 thread", [*TORCHRUN, *frozen], 1),
        ):
            _, _, log = run([*command, "--output", str(tmp / f"frozen-{threads}")], threads, tmp / f"cache-{threads}")
            found = re.search(r"encoded \d+ training texts in ([\d.]+)s", log)
            cold[name] = float(found.group(1)) if found else float("nan")
            print(f"cache build, {name}: {cold[name]:.1f}s for {args.n_train} training texts", flush=True)
        ratio = cold["1 process x 2 threads"] / cold["2 processes x 1 thread"]
        print(f"  cache build ratio one/two: {ratio:.2f}x")


if __name__ == "__main__":
    main()
