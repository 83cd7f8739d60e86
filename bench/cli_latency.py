"""How long the command line makes a person wait (issue: the first minute). Median of 5 runs of each command,
end to end from the shell (Python start-up included), on this machine.

    python bench/cli_latency.py                  # trains a small default-encoder model on examples/data first
    python bench/cli_latency.py --model DIR      # any model folder (exported once to DIR.onnx for the .onnx row)

Rows: an error for a missing file, a bad option and a wrong column; `--help` of every command; and
`bertlstm predict --model FOLDER --text hi` for a model folder (on its cached graph, and pinned to PyTorch) and
for its ONNX export; with ../shared/data, `predict --input` of SST-2 dev (872 sentences) for the folder. Targets:
errors <= 1.0 s, help <= 0.3 s, predict <= 4 s (model folder) and <= 2 s (.onnx).

Then the first answer on a fresh folder (issue #30, target <= 3 s): `predict --text hi` right after `bertlstm
train` (3 models trained, each with a graph cache of its own: the graph is exported as the model is saved), and
on a folder whose graph is not in the cache (a folder copied or downloaded: 5 runs, each with an empty graph
cache; it answers on PyTorch and exports the graph afterwards): the time until the answer is on stdout, and
until the command ends. The figures go to bench/results/cli_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BERTLSTM = [sys.executable, "-m", "bertlstm"]
TORCH = "<pytorch>"  # a row's marker: run with BERTLSTM_BACKEND=torch
COMMANDS = ("train", "predict", "evaluate", "export", "serve", "report", "cache")


GRAPHS = tempfile.mkdtemp(prefix="latency-graphs-")  # a model folder's graph: exported by the unmeasured run


def seconds(argv: list[str], expect: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of 5 runs (one unmeasured run first, so that every run finds the files cached)."""
    env = {
        **os.environ,
        "BERTLSTM_CACHE": tempfile.mkdtemp(prefix="latency-cache-"),
        "BERTLSTM_GRAPHS": GRAPHS,
        **(env or {}),
    }
    times = []
    for i in range(6):
        start = time.perf_counter()
        result = subprocess.run([*BERTLSTM, *argv], capture_output=True, text=True, env=env)
        if result.returncode != expect:
            raise SystemExit(f"{argv}: exit {result.returncode}, expected {expect}\n{result.stderr[-2000:]}")
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_answer(argv: list[str], graphs: str) -> tuple[float, float]:
    """Seconds until the first line of stdout (the answer), and until the command ends, with ``graphs`` as the
    graph cache."""
    env = {**os.environ, "BERTLSTM_CACHE": tempfile.mkdtemp(prefix="latency-cache-"), "BERTLSTM_GRAPHS": graphs}
    start = time.perf_counter()
    process = subprocess.Popen([*BERTLSTM, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    process.stdout.readline()  # the header
    process.stdout.readline()  # the answer
    answered = time.perf_counter() - start
    process.stdout.read()
    if process.wait() != 0:
        raise SystemExit(f"{argv}: exit {process.returncode}")
    return answered, time.perf_counter() - start


def fresh_folder_rows() -> list[dict[str, object]]:
    """The first predict on a folder just trained, and on one whose graph is not in the cache."""
    data = str(ROOT / "examples" / "data" / "train.csv")
    trained, copied = [], []
    for _ in range(3):
        graphs, folder = tempfile.mkdtemp(prefix="fresh-graphs-"), Path(tempfile.mkdtemp(prefix="fresh-")) / "m"
        env = {**os.environ, "BERTLSTM_GRAPHS": graphs, "BERTLSTM_CACHE": tempfile.mkdtemp(prefix="fresh-cache-")}
        argv = ["train", "--train", data, "--epochs", "1", "--output", str(folder), "-q"]
        subprocess.run([*BERTLSTM, *argv], check=True, env=env)
        trained.append(first_answer(["predict", "--model", str(folder), "--text", "hi"], graphs))
    for _ in range(5):
        argv = ["predict", "--model", str(RESULTS / "latency-model"), "--text", "hi"]
        copied.append(first_answer(argv, tempfile.mkdtemp(prefix="fresh-graphs-")))
    rows = []
    for name, runs in (("just trained", trained), ("its graph not in the cache", copied)):
        answer, end = (statistics.median(r[i] for r in runs) for i in (0, 1))
        rows.append({"command": f"first predict --text hi, {name}: the answer", "seconds": answer, "target": 3.0})
        rows.append({"command": f"first predict --text hi, {name}: the command ends", "seconds": end, "target": None})
    return rows


def small_model(folder: Path) -> Path:
    """The default encoder, frozen, one epoch on the bundled sample: a real model folder of the usual size."""
    if not (folder / "config.json").is_file():
        data = ROOT / "examples" / "data"
        argv = ["train", "--train", str(data / "train.csv"), "--epochs", "1", "--output", str(folder), "-q"]
        subprocess.run([*BERTLSTM, *argv], check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=RESULTS / "latency-model")
    args = parser.parse_args()
    model = small_model(args.model)
    onnx = model.with_suffix(".onnx")
    if not onnx.is_file():
        subprocess.run([*BERTLSTM, "export", "--model", str(model), "--output", str(onnx), "-q"], check=True)
    sample = str(ROOT / "examples" / "data" / "train.csv")
    rows = [
        ("error: missing file", ["train", "--train", "nope.csv", "--output", "/tmp/x"], 2, 1.0),
        ("error: bad option", ["train", "--epochs", "many"], 2, 1.0),
        ("error: wrong column", ["train", "--train", sample, "--text-column", "body", "--output", "/tmp/x"], 2, 1.0),
        ("error: missing model", ["predict", "--model", "nope", "--text", "hi"], 2, 1.0),
        ("--help", ["--help"], 0, 0.3),
        *((f"{command} --help", [command, "--help"], 0, 0.3) for command in COMMANDS),
        ("predict --text hi (model folder)", ["predict", "--model", str(model), "--text", "hi"], 0, 4.0),
        (
            "predict --text hi (model folder, PyTorch)",
            ["predict", "--model", str(model), "--text", "hi", TORCH],
            0,
            4.0,
        ),
        ("predict --text hi (.onnx)", ["predict", "--model", str(onnx), "--text", "hi"], 0, 2.0),
    ]
    dev = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"  # the figure: 872 sentences, <= 4 s
    out = str(Path(GRAPHS) / "p.csv")
    if dev.is_file():
        argv = ["predict", "--model", str(model), "--input", str(dev), "--output", out]
        rows.append(("predict --input sst2/dev.tsv (model folder)", argv, 0, 4.0))
        rows.append(("predict --input sst2/dev.tsv (model folder, PyTorch)", [*argv, TORCH], 0, 4.0))
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"{cpu}, {os.cpu_count()} cores; median of 5 runs, end to end\n")
    print("| command | seconds | target | ratio to target |\n|---|---|---|---|")
    measured = []
    for name, argv, expect, target in rows:
        pinned = TORCH in argv  # PyTorch, as with BERTLSTM_BACKEND=torch
        value = seconds([a for a in argv if a != TORCH], expect, {"BERTLSTM_BACKEND": "torch"} if pinned else None)
        measured.append({"command": name, "seconds": value, "target": target})
        print(f"| `{name}` | {value:.2f} | <= {target:g} | {value / target:.2f} |", flush=True)
    for row in fresh_folder_rows():
        measured.append(row)
        target = row["target"]
        shown = f"<= {target:g} | {row['seconds'] / target:.2f}" if isinstance(target, float) else "— | —"
        print(f"| `{row['command']}` | {row['seconds']:.2f} | {shown} |", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_latency.json").write_text(json.dumps({"cpu": cpu, "rows": measured}, indent=2) + "\n")


if __name__ == "__main__":
    main()
