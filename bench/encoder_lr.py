"""Which encoder learning rate suits `finetune` with the default encoder: a sweep over data sets and seeds
(issue: defaults that win out of the box).

    python bench/encoder_lr.py                                  # 2e-5 3e-5 5e-5 8e-5 x 3 data sets x seeds 0 1 2
    python bench/encoder_lr.py --seeds 0 --lrs 2e-5,5e-5        # a smaller look
    python bench/encoder_lr.py --table                          # only print the table of what is recorded

Each run is `finetune` for 3 epochs with every other default (warmup 10%, linear decay, best epoch on dev):
- SST-2: a fixed 4,000-sentence train subset (``random.Random(0).sample``), dev accuracy on the full dev set;
- TREC-6: the full train set (dev: a stratified 10% of it), test accuracy;
- SMS spam: a stratified 80/20 split (seed 0) of the collection (dev: 10% of the 80%), test macro-F1.
Results are appended to --out (JSON Lines) as they come, and a run already there is not repeated, so the sweep
can be run in parts. Data come from ../shared/data (see its README).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "encoder_lr.jsonl"


def datasets(data: Path, n_sst2: int) -> dict:
    """name -> (train texts, train labels, scored texts, scored labels, metric, dev given)."""
    from sklearn.model_selection import train_test_split

    from bertlstm.tasks.classify.data import load_labelled

    texts, labels = load_labelled(data / "sst2" / "train.tsv")
    rows = sorted(random.Random(0).sample(range(len(texts)), n_sst2))
    sst2 = ([texts[i] for i in rows], [labels[i] for i in rows], *load_labelled(data / "sst2" / "dev.tsv"))
    trec = [load_labelled(data / "trec" / f"{s}.tsv", "text", "label") for s in ("train", "test")]
    sms_texts, sms_labels = load_labelled(data / "sms_spam" / "sms_spam.tsv", "text", "label")
    split = train_test_split(sms_texts, sms_labels, test_size=0.2, random_state=0, stratify=sms_labels)
    return {
        "sst2": (*sst2, "accuracy", True),
        "trec": (*trec[0], *trec[1], "accuracy", False),
        "sms": (split[0], split[2], split[1], split[3], "macro_f1", False),
    }


def run(name: str, spec: tuple, lr: float, seed: int) -> dict:
    from bertlstm import BertLSTMClassifier

    train_x, train_y, x, y, metric, dev_given = spec
    clf = BertLSTMClassifier(mode="finetune", epochs=3, encoder_lr=lr, seed=seed, progress=False)
    start = time.perf_counter()
    clf.fit(train_x, train_y, *((x, y) if dev_given else ()))
    score = clf.metrics_[f"dev_{metric}"] if dev_given else clf.evaluate(x, y)[metric]
    return {
        "data": name,
        "encoder_lr": lr,
        "seed": seed,
        "metric": metric,
        "score": score,
        "best_epoch": clf.metrics_["best_epoch"],
        "dev": [h[f"dev_{metric}"] for h in clf.history_],
        "minutes": (time.perf_counter() - start) / 60,
    }


def table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    names, lrs = sorted({r["data"] for r in rows}), sorted({r["encoder_lr"] for r in rows})
    print("encoder lr  " + "".join(f"{n:>24}" for n in names))
    for lr in lrs:
        cells = []
        for name in names:
            scores = [100 * r["score"] for r in rows if r["data"] == name and r["encoder_lr"] == lr]
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            cells.append(f"{statistics.mean(scores):.2f} ± {std:.2f} (n={len(scores)})" if scores else "-")
        print(f"{lr:<12g}" + "".join(f"{c:>24}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--lrs", default="2e-5,3e-5,5e-5,8e-5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="sst2,trec,sms", help="data sets")
    parser.add_argument("--n-sst2", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="print the table of recorded runs and stop")
    args = parser.parse_args()
    if not args.table:
        recorded = args.out.read_text().splitlines() if args.out.is_file() else []
        done = {(r["data"], r["encoder_lr"], r["seed"]) for r in map(json.loads, recorded)}
        specs = datasets(args.data, args.n_sst2)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for seed in map(int, args.seeds.split(",")):
            for name in args.only.split(","):
                for lr in map(float, args.lrs.split(",")):
                    if (name, lr, seed) in done:
                        continue
                    result = run(name, specs[name], lr, seed)
                    print(json.dumps(result), flush=True)
                    with args.out.open("a") as f:
                        f.write(json.dumps(result) + "\n")
    table(args.out)


if __name__ == "__main__":
    main()
