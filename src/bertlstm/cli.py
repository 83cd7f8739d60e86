"""The ``bertlstm`` command: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from .config import MODES, TrainConfig

_D = TrainConfig()  # defaults shown in --help


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", help="column holding the text (default: auto-detect text/sentence/…)")
    p.add_argument("--label-column", help="column holding the label (default: auto-detect label/labels/…)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertlstm", description="Train and use BERT→LSTM text classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser("train", help="train a classifier from a data file", formatter_class=fmt)
    t.add_argument("--train", required=True, metavar="FILE", help="training data (.csv, .tsv, .jsonl, .parquet)")
    t.add_argument("--dev", metavar="FILE", help="dev data; without it --dev-fraction of train is held out")
    t.add_argument("--test", metavar="FILE", help="test data, evaluated once with the best model at the end")
    t.add_argument("--output", required=True, metavar="DIR", help="model folder to write (replaced atomically)")
    t.add_argument("--mode", choices=MODES, default="frozen", help="frozen, pooled or finetune recipe")
    t.add_argument("--encoder", default="minilm", help="'minilm' (packaged all-MiniLM-L6-v2), a model folder or hub id")
    _add_data_options(t)
    t.add_argument("--lstm-units", type=int, default=64, help="LSTM hidden units per direction")
    t.add_argument("--lstm-layers", type=int, default=1, help="stacked LSTM layers")
    t.add_argument("--bidirectional", action="store_true", help="run the LSTM in both directions")
    t.add_argument("--dropout", type=float, default=0.1, help="dropout before the dense layer")
    t.add_argument("--max-length", type=int, default=128, help="word pieces per text (longer ones are truncated)")
    t.add_argument("--batch-size", type=int, default=_D.batch_size, help="examples per optimizer step")
    t.add_argument("--epochs", type=int, default=_D.epochs, help="passes over the training data")
    t.add_argument("--lr", type=float, default=_D.lr, help="learning rate of LSTM and head")
    t.add_argument("--encoder-lr", type=float, default=_D.encoder_lr, help="encoder learning rate (finetune)")
    t.add_argument("--warmup-ratio", type=float, default=_D.warmup_ratio, help="warmup share of steps (finetune)")
    t.add_argument("--dev-fraction", type=float, default=_D.dev_fraction, help="held-out share when no --dev")
    t.add_argument("--seed", type=int, default=_D.seed, help="random seed")
    t.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto", help="where to train")
    t.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no", help="mixed precision")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--no-cache", action="store_true", help="frozen/pooled: run the encoder every epoch")
    t.add_argument("--cache-dir", help="feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm)")
    t.add_argument("--encode-batch-size", type=int, default=_D.encode_batch_size, help="texts per encoder-only batch")
    t.add_argument(
        "--pad-to-max-length", action="store_true", help="pad every batch to --max-length (slow; for comparison)"
    )

    p = sub.add_parser("predict", help="predict labels for texts", formatter_class=fmt)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by train")
    p.add_argument("--input", metavar="FILE", help="file of texts to label (otherwise --text or stdin lines)")
    p.add_argument("--output", metavar="FILE", help="write .csv or .jsonl here (default: CSV on stdout)")
    p.add_argument("--text", action="append", metavar="TEXT", help="a text to label (repeatable)")
    p.add_argument("--text-column", help="column holding the text (default: auto-detect)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto", help="where to run")

    e = sub.add_parser("evaluate", help="score a model on labelled data", formatter_class=fmt)
    e.add_argument("--model", required=True, metavar="DIR", help="model folder written by train")
    e.add_argument("--data", required=True, metavar="FILE", help="labelled data file")
    _add_data_options(e)
    e.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    e.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto", help="where to run")
    c = sub.add_parser("cache", help="show or free the frozen-encoder feature cache", formatter_class=fmt)
    c.add_argument("action", choices=("info", "clear"), help="info: list entries; clear: delete them all")
    c.add_argument("--cache-dir", help="feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm)")
    return parser


def cmd_cache(args: argparse.Namespace) -> None:
    from .feature_cache import FeatureCache

    cache = FeatureCache(args.cache_dir)
    if args.action == "clear":
        print(f"freed {cache.clear() / 2**20:.1f} MiB in {cache.root}")
        return
    entries = cache.entries()
    print(f"{cache.root}: {len(entries)} entries, {sum(e['bytes'] for e in entries) / 2**20:.1f} MiB")
    for e in entries:
        key = e["key"]
        print(
            f"  {e['entry']}  {e['bytes'] / 2**20:8.1f} MiB  {key['n_texts']:>7} texts  {key['pooling']:<6} "
            f"{key['dtype']}  max_length {key['max_length']}  encoder {key['encoder']}  {e['created']}"
        )


def cmd_train(args: argparse.Namespace) -> None:
    from .classifier import BertLSTMClassifier
    from .data import load_labelled

    texts, labels = load_labelled(args.train, args.text_column, args.label_column)
    dev_texts = dev_labels = None
    if args.dev:
        dev_texts, dev_labels = load_labelled(args.dev, args.text_column, args.label_column)
    test = load_labelled(args.test, args.text_column, args.label_column) if args.test else None
    clf = BertLSTMClassifier(
        mode=args.mode,
        encoder=args.encoder,
        lstm_units=args.lstm_units,
        lstm_layers=args.lstm_layers,
        bidirectional=args.bidirectional,
        dropout=args.dropout,
        max_length=args.max_length,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        encoder_lr=args.encoder_lr,
        warmup_ratio=args.warmup_ratio,
        dev_fraction=args.dev_fraction,
        seed=args.seed,
        device=args.device,
        mixed_precision=args.mixed_precision,
        progress=not args.no_progress,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        encode_batch_size=args.encode_batch_size,
        pad_to_max_length=args.pad_to_max_length,
    )
    clf.fit(texts, labels, dev_texts, dev_labels)
    if test is not None:
        report = clf.evaluate(*test)
        clf.metrics.update({"test_accuracy": report["accuracy"], "test_macro_f1": report["macro_f1"], "test": report})
        print(f"test accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}")
    print(f"model saved to {clf.save_pretrained(args.output)}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .classifier import BertLSTMClassifier
    from .data import load_texts
    from .predict import write_predictions

    if args.input:
        texts = load_texts(args.input, args.text_column)
    elif args.text:
        texts = args.text
    else:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    clf = BertLSTMClassifier.from_pretrained(args.model, device=args.device)
    write_predictions(texts, clf.predict_proba(texts), clf.label_names, args.output)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .classifier import BertLSTMClassifier
    from .data import load_labelled
    from .metrics import format_report

    texts, labels = load_labelled(args.data, args.text_column, args.label_column)
    clf = BertLSTMClassifier.from_pretrained(args.model, device=args.device)
    report = clf.evaluate(texts, labels)
    print(json.dumps(report) if args.json else format_report(report))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import BertLSTMError

    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "cache": cmd_cache}[args.command](args)
    except BertLSTMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # a config value out of range
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
