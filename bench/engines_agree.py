"""The default path on real data (issue #30): every task trained by ``bertlstm train`` (which exports its graph
as it saves the model), then ``bertlstm evaluate`` on the default engine (onnxruntime through the cached graph)
and with ``--backend torch``, and ``bertlstm predict`` both ways on the same file: the scores and the largest
difference of any probability.

    python bench/engines_agree.py                      # every task below (about 15 min on 2 cores)
    python bench/engines_agree.py --only imdb-chunks

Default encoder, seed 0, the default frozen recipe, 3 epochs, on fixed seeded subsets of ../shared/data:
- ``sst2``: 4,000 training sentences, the whole dev set (872) as test;
- ``goemotions``: multi-label, 4,000 training comments, 1,000 test comments;
- ``conll``: the tagger (2-layer BiLSTM of 128, CRF), 2,000 training sentences, the dev set as test;
- ``imdb-chunks``: documents read whole in windows of 128 pieces (``--long-text chunks``), 2,000 training
  reviews and 2,000 test reviews (the issue's run: before the fix, the default engine crashed on every review
  longer than a window in training).
Each row is appended to bench/results/engines_agree.jsonl.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "engines_agree.jsonl"
BERTLSTM = [sys.executable, "-m", "bertlstm"]


def subset(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))]


def tsv(path: Path) -> list[dict]:
    return pd.read_csv(path, sep="\t", keep_default_na=False, quoting=3).to_dict("records")


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def conll_sentences(path: Path, n: int | None) -> str:
    """The first ``n`` sentences of a CoNLL file (documents kept whole up to there)."""
    blocks = path.read_text().strip().split("\n\n")
    return "\n\n".join(blocks[: n or len(blocks)]) + "\n"


def prepare(task: str, folder: Path) -> tuple[Path, Path, list[str]]:
    """The training and test files of ``task`` in ``folder``, and its training options."""
    if task == "sst2":
        train = [{"text": r["sentence"], "label": r["label"]} for r in subset(tsv(DATA / "sst2" / "train.tsv"), 4000)]
        test = [{"text": r["sentence"], "label": r["label"]} for r in tsv(DATA / "sst2" / "dev.tsv")]
        return write_jsonl(train, folder / "train.jsonl"), write_jsonl(test, folder / "test.jsonl"), []
    if task == "goemotions":
        rows = {s: subset(tsv(DATA / "goemotions" / f"{s}.tsv"), n) for s, n in (("train", 4000), ("test", 1000))}
        files = [
            write_jsonl([{"text": r["text"], "labels": r["labels"]} for r in rows[s]], folder / f"{s}.jsonl")
            for s in rows
        ]
        return files[0], files[1], ["--multi-label", "--label-separator", ","]
    if task == "conll":
        (folder / "train.conll").write_text(conll_sentences(DATA / "conll2003" / "train.txt", 2000))
        (folder / "test.conll").write_text(conll_sentences(DATA / "conll2003" / "dev.txt", None))
        options = ["--task", "tag", "--lstm-layers", "2", "--bidirectional", "--lstm-units", "128", "--crf"]
        return folder / "train.conll", folder / "test.conll", options
    if task == "imdb-chunks":
        files = []
        for split in ("train", "test"):
            with gzip.open(DATA / "imdb" / f"{split}.jsonl.gz", "rt") as f:
                rows = subset([json.loads(line) for line in f], 2000)
            rows = [{"text": r["text"].replace("<br />", " "), "label": r["label"]} for r in rows]
            files.append(write_jsonl(rows, folder / f"{split}.jsonl"))
        return files[0], files[1], ["--long-text", "chunks"]
    raise SystemExit(f"unknown task {task}")


def run(argv: list[str], env: dict[str, str]) -> tuple[str, float]:
    start = time.perf_counter()
    result = subprocess.run([*BERTLSTM, *argv], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{argv[:3]}: exit {result.returncode}\n{result.stderr[-3000:]}")
    return result.stdout, time.perf_counter() - start


def probabilities(path: Path) -> np.ndarray:
    frame = pd.read_json(path, lines=True)
    if "entities" in frame.columns:  # a tagger's answers: entities, not probabilities
        return np.zeros((len(frame), 0))
    return frame[[c for c in frame.columns if c.startswith(("prob_", "predicted_prob_"))]].to_numpy(dtype=float)


def one(task: str, epochs: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"agree-{task}-"))
    env = {**os.environ, "BERTLSTM_GRAPHS": str(folder / "graphs"), "BERTLSTM_CACHE": str(folder / "cache")}
    train, test, options = prepare(task, folder)
    model = folder / "model"
    _, train_seconds = run(
        ["train", "--train", str(train), "--output", str(model), "--epochs", str(epochs), *options, "-q"], env
    )
    row: dict = {"task": task, "train_seconds_with_graph_export": round(train_seconds, 1)}
    for engine, extra in (("default", []), ("torch", ["--backend", "torch"])):
        out, seconds = run(["evaluate", "--model", str(model), "--data", str(test), "--json", *extra], env)
        report = json.loads(out)
        scores = {k: report[k] for k in ("accuracy", "micro_f1", "macro_f1") if isinstance(report.get(k), float)}
        row[engine] = {**scores, "evaluate_seconds": round(seconds, 1)}
        if task != "conll":
            predicted = folder / f"{engine}.jsonl"
            run(["predict", "--model", str(model), "--input", str(test), "--output", str(predicted), *extra], env)
    if task != "conll":
        row["largest_probability_difference"] = float(
            np.abs(probabilities(folder / "default.jsonl") - probabilities(folder / "torch.jsonl")).max()
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="sst2,goemotions,conll,imdb-chunks")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for task in args.only.split(","):
        row = one(task, args.epochs)
        print(json.dumps(row), flush=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
