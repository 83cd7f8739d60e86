"""Distillation (issue #31): a student that needs no encoder, against its teacher.

    python bench/distill.py run   --data sst2 --teacher runs/sst2-teacher --augment 10 --output runs/sst2-student
    python bench/distill.py run   --data sst2 --teacher runs/sst2-teacher --augment 0 --gold-weight 1 --output X
    python bench/distill.py run   --data trec --teacher runs/trec-teacher --augment 10 --output runs/trec-student
    python bench/distill.py run   --data sst2 ... --unlabeled 50000     # plus IMDB sentences without their labels
    python bench/distill.py speed --teacher runs/sst2-teacher --student runs/sst2-student

``run`` is ``bertlstm distill`` on ../shared/data (SST-2: full train, dev, test; TREC-6: train with 10% held out
as dev, test), default encoder's teacher, seed 0, as a whole process: it prints the student's and the teacher's
scores on dev and test, their agreement on dev, and where the time went (the teacher's pass over the transfer
set, the student's epochs). ``--unlabeled N`` adds N sentences of IMDB training reviews (movie reviews, as
SST-2; their labels unread). ``speed`` times the 872 SST-2 dev sentences in process on every engine of the
student and the teacher (best of 5, after one unmeasured run), ``bertlstm predict --input dev.tsv`` end to end
for the student (median of 5; its modules compiled to bytecode first, as a pip install leaves them), the two
folders' sizes, and both models exported with ``--quantize int8``: their time and dev accuracy against their
float32 engine's. Each result is appended to bench/results/distill.jsonl.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "distill.jsonl"
BERTLSTM = [sys.executable, "-m", "bertlstm"]
FILES = {
    "sst2": {"train": "sst2/train.tsv", "dev": "sst2/dev.tsv", "test": "sst2/test.tsv"},
    "trec": {"train": "trec/train.tsv", "test": "trec/test.tsv"},
}


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def imdb_sentences(n: int, seed: int = 0) -> Path:
    """``n`` sentences of IMDB training reviews, one per line, in a CSV with a text column (no label)."""
    import pandas as pd

    with gzip.open(DATA / "imdb" / "train.jsonl.gz", "rt") as f:
        reviews = [json.loads(line)["text"].replace("<br />", " ") for line in f]
    sentences = [s.strip() for r in reviews for s in re.split(r"(?<=[.!?])\s+", r) if 3 <= len(s.split()) <= 60]
    chosen = random.Random(seed).sample(sentences, min(n, len(sentences)))
    path = Path(tempfile.mkdtemp(prefix="imdb-sentences-")) / "unlabeled.csv"
    pd.DataFrame({"text": chosen}).to_csv(path, index=False)
    return path


def distill(args: argparse.Namespace) -> dict:
    files = {name: str(DATA / path) for name, path in FILES[args.data].items()}
    argv = ["distill", "--teacher", args.teacher, "--output", args.output, "--json", "--no-progress"]
    argv += [part for name, path in files.items() for part in (f"--{name}", path)]
    argv += ["--augment", str(args.augment), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    for name in ("lstm_units", "lr", "batch_size", "gold_weight", "loss", "dropout"):
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if args.unlabeled:
        argv += ["--unlabeled", str(imdb_sentences(args.unlabeled))]
    if args.train_embeddings:
        argv += ["--train-embeddings"]
    start = time.perf_counter()
    result = subprocess.run([*BERTLSTM, *argv, "--overwrite"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    history = _history(Path(args.output))
    teacher = metrics["teacher"]
    row = {
        "what": "run",
        "data": args.data,
        "augment": args.augment,
        "unlabeled": args.unlabeled,
        "gold_weight": args.gold_weight,
        "train_embeddings": args.train_embeddings,
        "lstm_units": args.lstm_units,
        "transfer_set": metrics["n_train"],
        "student_dev_accuracy": metrics.get("dev_accuracy"),
        "student_test_accuracy": metrics.get("test_accuracy"),
        "teacher_dev_accuracy": teacher.get("dev_accuracy"),
        "dev_agreement": teacher.get("dev_agreement"),
        "best_epoch": metrics.get("best_epoch"),
        "seconds": {
            "whole process": round(seconds, 1),
            "teacher pass": round(teacher.get("pass_seconds", 0.0), 1),
            "student epochs": round(sum(h["train_seconds"] for h in history), 1),
            "per epoch": [round(h["train_seconds"], 1) for h in history],
        },
        "argv": argv,
        "cpu": cpu(),
    }
    return row


def _history(folder: Path) -> list[dict]:
    import csv

    with open(folder / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def best_of(fn, n: int = 5) -> float:
    fn()  # warm: files cached, sessions built
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def int8_rows(args: argparse.Namespace, texts: list[str], labels: list[str]) -> dict:
    """Both models exported with ``--quantize int8``: their time over the dev sentences (best of 5) and their dev
    accuracy against their float32 engine's."""
    from bertlstm import open_model
    from bertlstm.deploy.export import export_onnx

    row = {}
    for who, folder in (("teacher", args.teacher), ("student", args.student)):
        path = export_onnx(folder, Path(tempfile.mkdtemp()) / f"{who}.onnx", quantize="int8")
        int8, fp32 = open_model(path), open_model(folder)
        row[f"{who} int8"] = round(best_of(lambda m=int8: m.predict_proba(texts)), 4)
        for name, model in (("int8", int8), ("fp32", fp32)):
            row[f"{who} {name} dev accuracy"] = round(100 * model.evaluate(texts, labels)["accuracy"], 2)
    return row


def speed(args: argparse.Namespace) -> dict:
    import bertlstm
    from bertlstm import open_model
    from bertlstm.tasks.classify.data import load_labelled

    texts, labels = load_labelled(DATA / "sst2" / "dev.tsv")
    row: dict = {"what": "speed", "cpu": cpu(), "cores": os.cpu_count(), "texts": len(texts)}
    for who, folder in (("teacher", args.teacher), ("student", args.student)):
        for engine in ("auto", "torch"):
            model = open_model(folder, backend=engine)
            row[f"{who} {'onnxruntime' if engine == 'auto' else 'torch'}"] = round(
                best_of(lambda m=model: m.predict_proba(texts)), 4
            )
        row[f"{who} folder MiB"] = round(
            sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20, 1
        )
    large = open_model(args.student, batch_size=256)  # against its default (32, as an encoder's)
    row["student onnxruntime, batches of 256"] = round(best_of(lambda: large.predict_proba(texts)), 4)
    fastest_teacher = min(row["teacher onnxruntime"], row["teacher torch"])
    fastest_student = min(row["student onnxruntime"], row["student torch"])
    row["student speed-up over the teacher's fastest engine"] = round(fastest_teacher / fastest_student, 1)
    row.update(int8_rows(args, texts, labels))
    row["int8 student speed-up over the int8 teacher"] = round(row["teacher int8"] / row["student int8"], 1)
    # As a pip install leaves the package: its modules compiled to bytecode once (where PYTHONDONTWRITEBYTECODE
    # is set, as on our machines, an editable checkout's modules are compiled again at every start).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(bertlstm.__file__).parent)], check=True)
    out = Path(tempfile.mkdtemp()) / "p.csv"
    argv = ["predict", "--model", args.student, "--input", str(DATA / "sst2" / "dev.tsv"), "--output", str(out)]
    runs = []
    for i in range(6):
        start = time.perf_counter()
        subprocess.run([*BERTLSTM, *argv], check=True, capture_output=True)
        if i:
            runs.append(time.perf_counter() - start)
    row["student predict --input dev.tsv, end to end (median of 5)"] = round(statistics.median(runs), 3)
    row["student folder / teacher folder"] = round(row["student folder MiB"] / row["teacher folder MiB"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("run", "speed"))
    parser.add_argument("--data", choices=tuple(FILES), default="sst2")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student")
    parser.add_argument("--output")
    parser.add_argument("--augment", type=int, default=10)
    parser.add_argument("--unlabeled", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    for name in ("lstm_units", "batch_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    for name in ("lr", "gold_weight", "dropout"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float)
    parser.add_argument("--loss", choices=("mse", "kl"))
    parser.add_argument("--train-embeddings", action="store_true", help="train the embedding table too")
    args = parser.parse_args()
    row = distill(args) if args.what == "run" else speed(args)
    print(json.dumps(row, indent=1), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
