"""bertlstm against Flair on the same frozen recipe, side by side in one sitting (issue: speed on every CPU).

    python bench/flair_compare.py --flair-python /path/to/venv/bin/python

Flair is not a dependency: give the Python of another environment that has it (Flair 0.15.1 needs transformers
below 5, so it cannot share this one). Both read the same 8,000-sentence SST-2 subset (``random.Random(0)
.sample``, as bench/train_speed.py) and score the full dev set, with the default encoder (its installed folder,
so nothing is downloaded), frozen, its last layer's word-piece states into a one-layer LSTM of 64 units and a
linear layer, Adam at 1e-3, batches of 32, 3 epochs, seed 0. Flair keeps the encoder's outputs in memory after
the first epoch (``embeddings_storage_mode="cpu"``, its default): its own cache. bertlstm runs with a cold
feature cache. Each is one whole process, timed from the shell, model saved; the figure is the ratio.
``--passes fp32,auto`` adds a bertlstm row for each ``--feature-pass`` (``auto``: the fastest this machine
computes natively; the row says which it chose).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"

FLAIR = """
import json, sys, torch
import flair
from flair.data import Corpus
from flair.datasets import ClassificationCorpus
from flair.embeddings import DocumentRNNEmbeddings, TransformerWordEmbeddings
from flair.models import TextClassifier
from flair.trainers import ModelTrainer

work, encoder = sys.argv[1], sys.argv[2]
flair.set_seed(0)
corpus = ClassificationCorpus(
    work, train_file="train.txt", dev_file="dev.txt", test_file="dev.txt", label_type="label"
)
labels = corpus.make_label_dictionary(label_type="label")
words = TransformerWordEmbeddings(encoder, layers="-1", fine_tune=False, subtoken_pooling="first")
document = DocumentRNNEmbeddings([words], hidden_size=64, rnn_type="LSTM", bidirectional=False)
model = TextClassifier(document, label_type="label", label_dictionary=labels)
result = ModelTrainer(model, corpus).train(
    work + "/flair-model", max_epochs=3, mini_batch_size=32, learning_rate=1e-3, optimizer=torch.optim.Adam,
    embeddings_storage_mode="cpu", save_final_model=True,
)
print(json.dumps({"dev_accuracy": result["test_score"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flair-python", required=True, help="a Python that has flair installed")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--passes", default="fp32", help="comma-separated: a bertlstm row for each --feature-pass")
    args = parser.parse_args()
    if not (args.data / "train.tsv").is_file():
        sys.exit(f"skipped: SST-2 is not at {args.data} (see ../shared/data/README)")
    import pandas as pd

    from bertlstm.core.encoder_names import resolve_encoder
    from bertlstm.tasks.classify.data import load_labelled

    work = Path(tempfile.mkdtemp(prefix="bench-flair-"))
    texts, labels = load_labelled(args.data / "train.tsv")
    rows = sorted(random.Random(0).sample(range(len(texts)), args.n_train))
    train = ([texts[i] for i in rows], [labels[i] for i in rows])
    dev = load_labelled(args.data / "dev.tsv")
    for name, (x, y) in (("train", train), ("dev", dev)):
        pd.DataFrame({"text": x, "label": y}).to_csv(work / f"{name}.csv", index=False)
        lines = (f"__label__{label} {' '.join(text.split())}" for text, label in zip(x, y, strict=True))
        (work / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (work / "flair_run.py").write_text(FLAIR)
    encoder = str(resolve_encoder("minilm"))
    print(f"{len(train[0])} training sentences, {len(dev[0])} dev; encoder {encoder}", flush=True)

    runs = {"flair": [args.flair_python, str(work / "flair_run.py"), str(work), encoder]}
    for way in args.passes.split(","):
        name = "bertlstm" if way == "fp32" else f"bertlstm --feature-pass {way}"
        runs[name] = [sys.executable, "-m", "bertlstm", "train", "--train", str(work / "train.csv"), "--dev"]
        runs[name] += [str(work / "dev.csv"), "--epochs", "3", "--feature-pass", way, "-q", "--json"]
        runs[name] += ["--output", str(work / f"bertlstm-{way}")]
    seconds, accuracy = {}, {}
    for name, command in runs.items():
        env_cache = {"BERTLSTM_CACHE": str(work / f"cache-{name}"), "HF_HUB_OFFLINE": "1"}  # cold; no Hub
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env_cache})
        seconds[name] = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        accuracy[name] = 100 * result["dev_accuracy"]
        chosen = ""
        if name != "flair":  # the pass the run used, as its model folder records it
            config = json.loads((Path(command[-1]) / "config.json").read_text())
            chosen = f" (feature pass {config['training']['feature_pass']})"
        print(f"{name:9} whole process {seconds[name]:6.1f} s, dev accuracy {accuracy[name]:.2f}{chosen}", flush=True)
    for name in [name for name in runs if name != "flair"]:
        print(f"{name} is {seconds['flair'] / seconds[name]:.2f}x faster than Flair (target >= 5x)")


if __name__ == "__main__":
    main()
