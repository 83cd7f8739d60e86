"""Does a lower precision hold accuracy? (issue #33) The frozen default recipe trained on features computed in
fp32, int8 (`feature_pass` int8: the encoder's linear layers in int8) and bf16 (`feature_pass` bf16), over
several seeds, each model scored two ways:

* **mixed**: the model predicts in fp32, as a saved model does today (features made in int8/bf16, read in fp32);
* **consistent**: the model predicts in the precision its features were made in (int8: the PyTorch int8
  engine, `predict --quantize int8`; bf16: the whole forward pass under bf16 autocast).

With `--predict int8` the fp32 models are also saved and scored as `bertlstm predict --precision int8` runs
them (a model trained as usual, predicting in a lower precision: the folder's graph quantized by onnxruntime).

    python bench/precision.py                                   # SST-2 8k dev, TREC-6 test, CoNLL-2003 dev F1
    python bench/precision.py --tasks sst2,trec --seeds 0,1,2 --ways int8,bf16
    python bench/precision.py --ways fp32 --predict int8        # fp32 models, predicted in int8

Where the CPU does not compute bf16 natively (no AVX512-BF16 or AMX, which the product refuses for speed),
bf16 is emulated here, **for accuracy only**: the numbers are bf16's (inputs rounded to bf16, products
accumulated in fp32, as native kernels do), the time is not, and none is reported. One cache folder per task,
shared by the seeds: the features of each precision are computed once. Rows are appended to
bench/results/precision.jsonl. Data come from ../shared/data (see its README); default encoder, seed as given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import tempfile
from contextlib import nullcontext
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "precision.jsonl"


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def classify_task(name: str, data: Path, n_train: int):
    """(estimator class, fit arguments, scored data, metric) for SST-2 (an n-text subset, dev) or TREC-6 (test)."""
    from bertlstm import BertLSTMClassifier
    from bertlstm.tasks.classify.data import load_labelled

    if name == "sst2":  # the subset of bench/frozen_cost.py and bench/train_speed.py
        texts, labels = load_labelled(data / "sst2" / "train.tsv")
        chosen = sorted(random.Random(0).sample(range(len(texts)), n_train))
        dev = load_labelled(data / "sst2" / "dev.tsv")
        return BertLSTMClassifier, ([texts[i] for i in chosen], [labels[i] for i in chosen], *dev), dev, "accuracy"
    train, test = (load_labelled(data / "trec" / f"{s}.tsv") for s in ("train", "test"))
    return BertLSTMClassifier, train, test, "accuracy"


def conll_task(data: Path):
    from bertlstm.tasks.tag.data import read_tagged
    from bertlstm.tasks.tag.estimator import BertLSTMTagger

    train, dev = (read_tagged(data / "conll2003" / f"{split}.txt") for split in ("train", "dev"))
    return BertLSTMTagger, (train, None, dev), (dev,), "micro_f1"


def score(estimator, scored: tuple, metric: str, way: str) -> float:
    """``estimator``'s ``metric`` on ``scored``, predicting in fp32 (``way`` fp32) or in ``way``."""
    import torch

    predictor = estimator.predictor("int8" if way == "int8" else None)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if way == "bf16" else nullcontext()
    with autocast:
        return 100 * float(predictor.evaluate(*scored)[metric])


def as_predicted(estimator, scored: tuple, metric: str, precisions: list[str]) -> dict[str, float]:
    """``estimator`` saved, opened as `bertlstm predict --precision P` opens it, and scored, for each P."""
    from bertlstm import open_model

    os.environ.setdefault("BERTLSTM_GRAPHS", tempfile.mkdtemp(prefix="bench-precision-graphs-"))  # its own
    with tempfile.TemporaryDirectory() as folder:
        estimator.save_pretrained(folder, overwrite=True)
        return {p: 100 * float(open_model(folder, precision=p).evaluate(*scored)[metric]) for p in precisions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sst2,trec,conll")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ways", default="int8,bf16", help="the precisions compared with fp32")
    parser.add_argument("--predict", default="", help="precisions the fp32 models are also predicted in (int8)")
    parser.add_argument("--n-train", type=int, default=8000, help="SST-2 subset (random.Random(0))")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not (args.data / "sst2").is_dir():
        raise SystemExit(f"skipped: the benchmark data are not in {args.data}")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from bertlstm.core import feature_cache
    from bertlstm.core.modeling import native_bf16

    ways = ["fp32", *(w for w in args.ways.split(",") if w != "fp32")]
    native = native_bf16(torch.device("cpu"))
    if "bf16" in ways and not native:
        print("bf16: this CPU has neither AVX512-BF16 nor AMX; emulated for accuracy only (no times)", flush=True)
        feature_cache.native_bf16 = lambda device: True  # the bench's own override; the product refuses
    seeds = [int(s) for s in args.seeds.split(",")]
    RESULTS.parent.mkdir(exist_ok=True)
    for task in args.tasks.split(","):
        cls, fit_args, scored, metric = (
            conll_task(args.data) if task == "conll" else classify_task(task, args.data, args.n_train)
        )
        cache = tempfile.mkdtemp(prefix=f"bench-precision-{task}-")
        scores: dict[str, dict[str, list[float]]] = {w: {"mixed": [], "consistent": []} for w in ways}
        predicted = [p for p in args.predict.split(",") if p]
        for way in ways:
            for seed in seeds:
                options = {"seed": seed, "progress": False, "device": "cpu", "cache_dir": cache, "feature_pass": way}
                estimator = cls(**options).fit(*fit_args)
                mixed, consistent = score(estimator, scored, metric, "fp32"), score(estimator, scored, metric, way)
                scores[way]["mixed"].append(mixed)
                scores[way]["consistent"].append(consistent)
                print(f"{task} {way} seed {seed}: mixed {mixed:.2f}, consistent {consistent:.2f}", flush=True)
                if way == "fp32":
                    for precision, value in as_predicted(estimator, scored, metric, predicted).items():
                        scores.setdefault(f"predict {precision}", {"mixed": [], "consistent": []})
                        scores[f"predict {precision}"]["consistent"].append(value)
                        print(f"{task} fp32 seed {seed}, predicted in {precision}: {value:.2f}", flush=True)
        reported = [*ways, *(w for w in scores if w.startswith("predict "))]
        base = statistics.mean(scores["fp32"]["mixed"])
        for way in reported:
            row = {
                "task": task,
                "metric": metric,
                "way": way,
                "seeds": seeds,
                **{kind: [round(x, 2) for x in xs] for kind, xs in scores[way].items() if xs},
                **{f"{kind}_mean": round(statistics.mean(xs), 2) for kind, xs in scores[way].items() if xs},
                **{f"{kind}_change": round(statistics.mean(xs) - base, 2) for kind, xs in scores[way].items() if xs},
                "bf16_native": native,
                "cpu": cpu(),
            }
            print(json.dumps(row), flush=True)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
