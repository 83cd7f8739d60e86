"""How faithful are the word scores of ``predict --explain``? The ERASER measures (DeYoung et al. 2020) on SST-2 dev.

    python bench/faithfulness.py --model runs/sst2-frozen [--model runs/sst2-finetune] [--n 872] [--steps 32]

For each model and each method (integrated gradients, gradient x input, occlusion), every dev sentence is
explained for its predicted label; then, for k = 10/20/50% of its words (at least one):

* comprehensiveness: the predicted label's probability minus its probability once the top-k% scored words are
  removed (higher: the words mattered);
* sufficiency: the probability minus its probability when only those words are kept (lower: they suffice).

Words are removed as the explanation counts them (all their word pieces; [CLS] and [SEP] stay). The baseline
removes as many random words (mean of 5 draws, seed 0). Prints a Markdown table per model, and the seconds per
sentence of each method; appends the figures to bench/results/faithfulness.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bertlstm import open_model
from bertlstm.core.attribution import Pieces
from bertlstm.tasks.classify.data import TokenDataset
from bertlstm.tasks.classify.predictor import activate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"
RESULTS = Path(__file__).resolve().parent / "results" / "faithfulness.jsonl"
METHODS = ("integrated-gradients", "gradient-x-input", "occlusion")
SHARES = (0.1, 0.2, 0.5)
DRAWS = 5


def probabilities(predictor, rows: list[list[int]], label: int) -> np.ndarray:
    """The probability of class ``label`` for each id list, in batches."""
    out = []
    for start in range(0, len(rows), predictor.batch_size):
        part = TokenDataset(rows[start : start + predictor.batch_size], None, predictor.pad_id)
        logits = predictor.engine(part.collate([part[i] for i in range(len(part))]))
        out.append(activate(logits, predictor.labels.multi_label)[:, label])
    return np.concatenate(out)


def keep_words(pieces: Pieces, words: set[int], keep: bool) -> list[int]:
    """The ids with only ``words`` kept (``keep``) or with them removed; special tokens always stay."""
    return [i for i, w in zip(pieces.ids, pieces.word_of, strict=True) if w is None or ((w in words) == keep)]


def measure(predictor, texts: list[str], method: str, steps: int) -> dict:
    """Comprehensiveness and sufficiency at each share, for ``method`` and for random words; seconds per text."""
    rng = random.Random(0)
    start = time.perf_counter()
    explained = predictor.explain(texts, method=method, steps=steps)
    seconds = (time.perf_counter() - start) / len(texts)
    sums = {f"{what}@{int(share * 100)}": [] for what in ("comp", "suff", "rand_comp", "rand_suff") for share in SHARES}
    for text, why in zip(texts, explained, strict=True):
        encoding = predictor.tokenizer.encode(text)
        cut = (
            predictor.cut.head_tail(list(range(len(encoding.ids)))) if predictor.cut.long_text == "head-tail" else None
        )
        pieces = Pieces.of(encoding, text, cut)  # the words as the explanation counts them
        if not pieces.words:
            continue
        label = predictor.labels.names.index(why["explained"])
        order = np.argsort([-w["score"] for w in why["explanation"]], kind="stable")
        rows, names = [pieces.ids], []
        for share in SHARES:
            count = max(1, round(share * len(pieces.words)))
            top = {int(i) for i in order[:count]}
            rows += [keep_words(pieces, top, False), keep_words(pieces, top, True)]
            names += [("comp", share), ("suff", share)]
            for _ in range(DRAWS):
                drawn = set(rng.sample(range(len(pieces.words)), count))
                rows += [keep_words(pieces, drawn, False), keep_words(pieces, drawn, True)]
                names += [("rand_comp", share), ("rand_suff", share)]
        p = probabilities(predictor, rows, label)
        drops: dict[str, list[float]] = {}
        for (what, share), value in zip(names, p[0] - p[1:], strict=True):
            drops.setdefault(f"{what}@{int(share * 100)}", []).append(float(value))
        for key, values in drops.items():
            sums[key].append(float(np.mean(values)))
    return {"method": method, "seconds_per_text": seconds, **{k: float(np.mean(v)) for k, v in sums.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="a classifier's model folder (repeatable)")
    parser.add_argument("--n", type=int, default=872, help="dev sentences (the first N)")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"SST-2 dev is not at {DATA} (see ../shared/data/README.md)")
    texts = pd.read_csv(DATA, sep="\t")["sentence"].astype(str).tolist()[: args.n]
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"{cpu}; SST-2 dev, first {len(texts)} sentences\n")
    for model in args.model:
        predictor = open_model(model, backend="torch", device="cpu")
        print(f"### {model}\n")
        print("| method | s / sentence | comp@10 | comp@20 | comp@50 | suff@10 | suff@20 | suff@50 |")
        print("|---|---|---|---|---|---|---|---|")
        for method in args.methods.split(","):
            row = measure(predictor, texts, method, args.steps)
            cells = [f"{row[f'comp@{k}']:.3f} ({row[f'rand_comp@{k}']:.3f})" for k in (10, 20, 50)]
            cells += [f"{row[f'suff@{k}']:.3f} ({row[f'rand_suff@{k}']:.3f})" for k in (10, 20, 50)]
            print(f"| {method} | {row['seconds_per_text']:.3f} | " + " | ".join(cells) + " |", flush=True)
            RESULTS.parent.mkdir(exist_ok=True)
            with RESULTS.open("a") as f:
                f.write(json.dumps({"model": model, "n": len(texts), "steps": args.steps, **row}) + "\n")
        print("\n(in brackets: the same number of random words, mean of 5 draws)\n")


if __name__ == "__main__":
    main()
