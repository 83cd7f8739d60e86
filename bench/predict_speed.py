"""Prediction speed and the accuracy cost of int8, one run on one machine (issue: putting a model to work).

    python bench/predict_speed.py                     # trains the default frozen model on SST-2 first if needed
    python bench/predict_speed.py --model DIR         # any trained model folder

1. In-process latency: the 872 SST-2 dev sentences, raw text to labels, model already loaded (median of 5
   rounds; each round runs every engine once, so that the machine's drifts fall on all alike).
2. Throughput (texts/s) on SST-2 dev + test (2,693 texts) for torch fp32, torch int8 (dynamic quantization of
   the linear and LSTM layers), onnxruntime fp32 and int8 (its own dynamic quantization) on `bertlstm export`'s
   standard graphs and on the model folder's cached graphs (onnxruntime's fusions; what `predict` runs, and
   `predict --precision int8`), and torch bf16 (`--precision bf16`) where the CPU computes bf16 natively, with
   dev and test accuracy for each and the ratio to torch fp32.
3. End to end from the shell: `bertlstm predict --input dev.tsv --output …` including start-up and model
   loading, for a model folder and for the int8 ONNX file; and `bertlstm --help`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
RESULTS = Path(__file__).resolve().parent / "results"


def default_model(data: Path) -> Path:
    """The default recipe (frozen, LSTM 64 over the last layer) on full SST-2: 2 epochs keep BENCHMARKS' best."""
    from bertlstm import BertLSTMClassifier
    from bertlstm.tasks.classify.data import load_labelled

    folder = RESULTS / "sst2-frozen"
    if not (folder / "config.json").is_file():
        clf = BertLSTMClassifier(mode="frozen", epochs=2, seed=0, progress=False)
        clf.fit(*load_labelled(data / "train.tsv"), *load_labelled(data / "dev.tsv"))
        clf.save_pretrained(folder)
    return folder


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "an unnamed CPU"


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    if isinstance(result, subprocess.CompletedProcess):
        result.check_returncode()
    return time.perf_counter() - start, result


def quiet(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def accuracy(predictor, texts: list[str], labels: list[str]) -> float:
    predicted = predictor.labels.decode(predictor.predict_proba(texts))
    return float(np.mean([a == b for a, b in zip(predicted, labels, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: train the default recipe on SST-2)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    import torch

    from bertlstm import open_model
    from bertlstm.core.modeling import native_bf16
    from bertlstm.deploy.export import export_onnx
    from bertlstm.tasks.classify.data import load_labelled

    model = args.model or default_model(args.data)
    os.environ["BERTLSTM_GRAPHS"] = tempfile.mkdtemp(prefix="bench-predict-graphs-")  # exported afresh
    dev, test = load_labelled(args.data / "dev.tsv"), load_labelled(args.data / "test.tsv")
    print(f"{cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads; model {model}", flush=True)
    if not native_bf16(torch.device("cpu")):
        print("no torch bf16 row: this CPU computes bf16 neither with AVX512-BF16 nor with AMX", flush=True)
    RESULTS.mkdir(exist_ok=True)
    onnx = {q: RESULTS / f"{model.name}{'-int8' if q else ''}.onnx" for q in (None, "int8")}
    for quantize, path in onnx.items():
        seconds, _ = timed(export_onnx, model, path, quantize, True)  # overwrite an earlier run's export
        print(f"export {path.name}: {seconds:.1f}s, {path.stat().st_size / 2**20:.1f} MiB", flush=True)

    backends = {
        "torch fp32": lambda: open_model(model, backend="torch", device="cpu"),
        "torch int8": lambda: open_model(model, backend="torch", device="cpu", quantize="int8"),
        "onnx fp32": lambda: open_model(onnx[None]),
        "onnx int8": lambda: open_model(onnx["int8"]),
        "folder fp32": lambda: open_model(model),  # the default: its cached graph
        "folder int8": lambda: open_model(model, precision="int8"),
    }
    if native_bf16(torch.device("cpu")):
        backends["torch bf16"] = lambda: open_model(model, device="cpu", precision="bf16")
    predictors = {name: load() for name, load in backends.items()}
    for predictor in predictors.values():
        predictor.predict_proba(dev[0][:32])  # warm-up
    # each round runs every engine once, so that this machine's drifts fall on all of them alike
    latency: dict[str, list[float]] = {name: [] for name in predictors}
    throughput: dict[str, list[float]] = {name: [] for name in predictors}
    texts = dev[0] + test[0]
    for _ in range(5):
        for name, predictor in predictors.items():
            latency[name].append(timed(predictor.predict_proba, dev[0])[0])
    for _ in range(2):
        for name, predictor in predictors.items():
            throughput[name].append(len(texts) / timed(predictor.predict_proba, texts)[0])
    rows = {}
    for name, predictor in predictors.items():
        rows[name] = {
            "dev_872_seconds": statistics.median(latency[name]),
            "texts_per_s": max(throughput[name]),
            "dev_accuracy": accuracy(predictor, *dev),
            "test_accuracy": accuracy(predictor, *test),
        }
        r = rows[name]
        print(
            f"{name:<12} 872 dev texts {r['dev_872_seconds']:.2f}s (median of 5)  {r['texts_per_s']:6.0f} texts/s  "
            f"dev {r['dev_accuracy']:.2%}  test {r['test_accuracy']:.2%}",
            flush=True,
        )
    base = rows["torch fp32"]
    for name, r in rows.items():
        cost = {split: 100 * (base[f"{split}_accuracy"] - r[f"{split}_accuracy"]) for split in ("dev", "test")}
        speed, alone = r["texts_per_s"] / base["texts_per_s"], base["dev_872_seconds"] / r["dev_872_seconds"]
        print(
            f"  {name:<12} {speed:.2f}x torch fp32 (872 dev alone: {alone:.2f}x); "
            f"accuracy cost dev {cost['dev']:+.2f}, test {cost['test']:+.2f}"
        )
    shell(model, onnx["int8"], args.data)
    print(json.dumps(rows))


def shell(model: Path, onnx_int8: Path, data: Path) -> None:
    """Wall time of whole commands, start-up and model loading included."""
    bertlstm = [sys.executable, "-m", "bertlstm.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, command in (
            ("bertlstm --help", [*bertlstm, "--help"]),
            ("bertlstm train --help", [*bertlstm, "train", "--help"]),
            ("predict 872 dev, model folder", [*bertlstm, "predict", "--model", str(model)]),
            ("predict 872 dev, onnx int8", [*bertlstm, "predict", "--model", str(onnx_int8)]),
        ):
            if "predict" in command:
                command += ["--input", str(data / "dev.tsv"), "--output", f"{tmp}/p.csv", "-q"]
            seconds = min(timed(quiet, command)[0] for _ in range(3))
            print(f"{name:<32} {seconds:.2f}s (best of 3, end to end)", flush=True)


if __name__ == "__main__":
    main()
