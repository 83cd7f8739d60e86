"""The accuracy figures of the training issue, one experiment per command, each printing its own time.

    python bench/figures.py trec            # TREC-6 (coarse), finetune, test accuracy
    python bench/figures.py sms             # SMS spam, stratified 80/20 (seed 0), spam F1 with/without weights
    python bench/figures.py goemotions      # GoEmotions, 28 labels, multi-label, test macro-F1
    python bench/figures.py sst2-layers     # SST-2, frozen 2-layer BiLSTM, each --layers choice
    python bench/figures.py sst2-finetune --encoder-lr 5e-5
    python bench/figures.py sst2-partial --top-layers 1,2,3   # finetune of the top K layers on cached states

Data come from ../shared/data (see its README); every run uses the default encoder and seed 0 unless given.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

from sklearn.model_selection import train_test_split

from bertlstm import BertLSTMClassifier
from bertlstm.tasks.classify.data import load_labelled

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def report(name: str, clf: BertLSTMClassifier, start: float, **scores: float) -> None:
    minutes = (time.perf_counter() - start) / 60
    shown = "  ".join(f"{k} {v:.4f}" for k, v in scores.items())
    print(f"{name}: {shown}  (best epoch {clf.metrics_['best_epoch']}, {minutes:.1f} min)", flush=True)
    print(
        json.dumps(
            {
                "experiment": name,
                "minutes": minutes,
                **scores,
                "history": clf.history_,
                "train_options": clf.train_config.to_dict(),
                "model_options": clf.config.to_dict(),
            }
        ),
        flush=True,
    )


def common(args: argparse.Namespace) -> dict:
    """The options every experiment takes from the command line."""
    options = {"encoder": args.encoder, "seed": args.seed, "encoder_lr": args.encoder_lr, "progress": False}
    if args.bidirectional:
        options["bidirectional"] = True
    if args.layers and args.experiment != "sst2-layers":
        options["layers"] = args.layers
    for name in ("batch_size", "dropout", "lstm_layers"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def tag(clf: BertLSTMClassifier) -> str:
    cfg, train = clf.config, clf.train_config
    return (
        f"encoder_lr={train.encoder_lr} bidirectional={cfg.bidirectional} lstm_layers={cfg.lstm_layers} "
        f"batch_size={train.batch_size} "
        f"dropout={cfg.dropout} layers={cfg.layers} seed={train.seed}"
    )


def trec(args: argparse.Namespace) -> None:
    train, test = (load_labelled(args.data / "trec" / f"{s}.tsv", "text", "label") for s in ("train", "test"))
    start = time.perf_counter()
    clf = BertLSTMClassifier(mode="finetune", epochs=args.epochs or 5, **common(args))
    clf.fit(*train)  # dev: a stratified 10% of train (TREC has no dev split)
    report(f"trec finetune {tag(clf)}", clf, start, test_accuracy=clf.evaluate(*test)["accuracy"])


def sms(args: argparse.Namespace) -> None:
    texts, labels = load_labelled(args.data / "sms_spam" / "sms_spam.tsv", "text", "label")
    tr_t, te_t, tr_l, te_l = train_test_split(texts, labels, test_size=0.2, random_state=0, stratify=labels)
    for weight in (None, "balanced"):
        start = time.perf_counter()
        clf = BertLSTMClassifier(
            mode=args.mode or "frozen", epochs=args.epochs or 5, class_weight=weight, metric="macro_f1", **common(args)
        )
        clf.fit(tr_t, tr_l)
        spam = clf.evaluate(te_t, te_l)["per_class"]["spam"]
        report(
            f"sms {clf.config.mode} class_weight={weight} {tag(clf)}",
            clf,
            start,
            spam_f1=spam["f1"],
            spam_precision=spam["precision"],
            spam_recall=spam["recall"],
        )


def goemotions(args: argparse.Namespace) -> None:
    def load(split: str) -> tuple[list[str], list[list[str]]]:
        return load_labelled(args.data / "goemotions" / f"{split}.tsv", "text", "labels", label_separator=",")

    train, dev, test = load("train"), load("dev"), load("test")
    start = time.perf_counter()
    options = {**common(args), "bidirectional": True}
    clf = BertLSTMClassifier(
        mode=args.mode or "frozen", multi_label=True, epochs=args.epochs or 10, patience=3, **options
    )
    clf.fit(*train, *dev)
    result = clf.evaluate(*test)
    report(
        f"goemotions {clf.config.mode} {tag(clf)}",
        clf,
        start,
        test_macro_f1=result["macro_f1"],
        test_micro_f1=result["micro_f1"],
    )


def sst2_layers(args: argparse.Namespace) -> None:
    train, dev = (load_labelled(args.data / "sst2" / f"{s}.tsv") for s in ("train", "dev"))
    for layers in (args.layers or "last,second-to-last,concat-last-4,scalar-mix").split(","):
        start = time.perf_counter()
        options = {**common(args), "bidirectional": True, "layers": layers}
        clf = BertLSTMClassifier(mode="frozen", lstm_layers=2, epochs=args.epochs or 5, **options)
        clf.fit(*train, *dev)
        report(f"sst2 frozen 2-layer BiLSTM layers={layers}", clf, start, dev_accuracy=clf.metrics_["dev_accuracy"])


def sst2_finetune(args: argparse.Namespace) -> None:
    train, dev, test = (load_labelled(args.data / "sst2" / f"{s}.tsv") for s in ("train", "dev", "test"))
    start = time.perf_counter()
    clf = BertLSTMClassifier(mode="finetune", epochs=args.epochs or 3, **common(args))
    clf.fit(*train, *dev)
    report(
        f"sst2 finetune {tag(clf)}",
        clf,
        start,
        dev_accuracy=clf.metrics_["dev_accuracy"],
        test_accuracy=clf.evaluate(*test)["accuracy"],
    )


def sst2_partial(args: argparse.Namespace) -> None:
    """Partial fine-tuning: the top K layers train on cached states of the lower ones (full train, full dev)."""
    train, dev = (load_labelled(args.data / "sst2" / f"{s}.tsv") for s in ("train", "dev"))
    if args.n_train:  # a fixed subset, for the speed of a long run (ex/s hardly moves along an epoch)
        rows = sorted(random.Random(0).sample(range(len(train[0])), args.n_train))
        train = ([train[0][i] for i in rows], [train[1][i] for i in rows])
    for top in (args.top_layers or "1,2,3").split(","):
        start = time.perf_counter()
        clf = BertLSTMClassifier(mode="finetune", train_top_layers=int(top), epochs=args.epochs or 3, **common(args))
        clf.fit(*train, *dev)
        epochs = "  ".join(f"{h['train_seconds']:.0f}" for h in clf.history_)
        print(f"top {top}: cache build {clf.metrics_['prepare_seconds']:.0f} s, epochs {epochs} s", flush=True)
        report(f"sst2 finetune top {top} {tag(clf)}", clf, start, dev_accuracy=clf.metrics_["dev_accuracy"])


def main() -> None:
    experiments = {
        "trec": trec,
        "sms": sms,
        "goemotions": goemotions,
        "sst2-layers": sst2_layers,
        "sst2-finetune": sst2_finetune,
        "sst2-partial": sst2_partial,
    }
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=list(experiments))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, help="override the experiment's epochs")
    parser.add_argument("--mode", help="override the experiment's recipe (sms, goemotions)")
    parser.add_argument("--layers", help="--layers choice; for sst2-layers a comma-separated list of choices")
    parser.add_argument("--encoder-lr", type=float, default=2e-5)
    parser.add_argument("--top-layers", help="sst2-partial: comma-separated K of --train-top-layers (default 1,2,3)")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--encoder", default="minilm", help="encoder name or local folder (default: minilm)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, help="override the default batch size (32)")
    parser.add_argument("--dropout", type=float, help="override the default dropout (0.1)")
    parser.add_argument("--lstm-layers", type=int, help="override the default stacked LSTM layers (1)")
    parser.add_argument("--n-train", type=int, help="sst2-partial: a random subset of train (seed 0) of this size")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # each epoch's line from the library
    experiments[args.experiment](args)


if __name__ == "__main__":
    main()
