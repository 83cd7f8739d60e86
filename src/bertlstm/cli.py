"""The ``bertlstm`` command: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings

from .config import LAYERS, MODES, ModelConfig, TrainConfig
from .errors import BertLSTMError

_M, _T = ModelConfig(), TrainConfig()  # defaults shown in --help
DEVICES = ("auto", "cuda", "mps", "cpu")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a classifier from a data file", formatter_class=_fmt)
    data = t.add_argument_group("data")
    data.add_argument("--train", metavar="FILE", help="training data (.csv, .tsv, .jsonl, .parquet)")
    data.add_argument("--dev", metavar="FILE", help="dev data; without it --dev-fraction of train is held out")
    data.add_argument("--test", metavar="FILE", help="test data, evaluated once with the best model at the end")
    data.add_argument("--output", metavar="DIR", help="model folder to write (replaced atomically at the end)")
    data.add_argument("--resume", metavar="DIR", help="continue the killed run whose --output was DIR")
    data.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output even when it is not a bertlstm model folder (never the working folder or input data)",
    )
    data.add_argument("--text-column", help="column holding the text (default: auto-detect text/sentence/...)")
    data.add_argument("--label-column", help="column holding the label (default: auto-detect label/labels/...)")
    data.add_argument("--dev-fraction", type=float, default=_T.dev_fraction, help="held-out share when no --dev")
    data.add_argument("--multi-label", action="store_true", help="several labels per text (sigmoid outputs)")
    data.add_argument("--label-separator", default=",", help="separates the labels of one text (multi-label)")
    m = t.add_argument_group("model")
    m.add_argument("--mode", choices=MODES, default=_M.mode, help="frozen, pooled or finetune recipe")
    m.add_argument("--encoder", default=_M.encoder, help="'minilm' (packaged all-MiniLM-L6-v2), a folder or hub id")
    m.add_argument("--layers", choices=LAYERS, default=_M.layers, help="encoder layers the LSTM reads")
    m.add_argument("--lstm-units", type=int, default=_M.lstm_units, help="LSTM hidden units per direction")
    m.add_argument("--lstm-layers", type=int, default=_M.lstm_layers, help="stacked LSTM layers")
    m.add_argument("--bidirectional", action="store_true", help="run the LSTM in both directions")
    m.add_argument("--dropout", type=float, default=_M.dropout, help="dropout before the dense layer")
    m.add_argument("--max-length", type=int, default=_M.max_length, help="word pieces per text (longer: truncated)")
    o = t.add_argument_group("training")
    o.add_argument("--epochs", type=int, default=_T.epochs, help="passes over the training data")
    o.add_argument("--batch-size", type=int, default=_T.batch_size, help="examples per micro-batch")
    o.add_argument("--grad-accum", type=int, default=_T.grad_accum, help="micro-batches per optimizer step")
    o.add_argument("--lr", type=float, default=_T.lr, help="learning rate of LSTM and head")
    o.add_argument("--encoder-lr", type=float, default=_T.encoder_lr, help="encoder learning rate (finetune)")
    o.add_argument("--weight-decay", type=float, default=_T.weight_decay, help="AdamW weight decay of LSTM and head")
    o.add_argument("--warmup-ratio", type=float, default=_T.warmup_ratio, help="warmup share of steps (finetune)")
    o.add_argument("--max-grad-norm", type=float, default=_T.max_grad_norm, help="gradient clipping (0: off)")
    o.add_argument("--patience", type=int, default=_T.patience, help="early stop after N epochs without gain (0: off)")
    o.add_argument(
        "--metric",
        choices=("auto", "accuracy", "macro_f1", "micro_f1"),
        default=_T.metric,
        help="dev metric for the best epoch (auto: accuracy, or macro_f1 when multi-label)",
    )
    o.add_argument("--class-weight", help="loss weights: 'balanced' or one number per class, e.g. '1,5'")
    o.add_argument("--threshold", default=_T.threshold, help="multi-label: per-label | global | a number")
    o.add_argument("--seed", type=int, default=_T.seed, help="random seed")
    o.add_argument("--seeds", help="several seeds, e.g. 0,1,2: one model each in OUTPUT/seed-N, then mean ± std")
    r = t.add_argument_group("running")
    r.add_argument("--device", choices=DEVICES, default="auto", help="where to train")
    r.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no", help="mixed precision")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--no-cache", action="store_true", help="frozen/pooled: run the encoder every epoch")
    r.add_argument("--cache-dir", help="feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm)")
    r.add_argument("--encode-batch-size", type=int, default=_T.encode_batch_size, help="texts per encoder-only batch")
    r.add_argument("--pad-to-max-length", action="store_true", help="pad batches to --max-length (slow; to compare)")
    r.add_argument("--tensorboard", metavar="DIR", help="also log each epoch to TensorBoard in DIR")


def _fmt(prog: str) -> argparse.HelpFormatter:
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertlstm", description="Train and use BERT→LSTM text classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)

    p = sub.add_parser("predict", help="predict labels for texts", formatter_class=_fmt)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by train")
    p.add_argument("--input", metavar="FILE", help="file of texts to label (otherwise --text or stdin lines)")
    p.add_argument("--output", metavar="FILE", help="write .csv, .tsv or .jsonl here (default: CSV on stdout)")
    p.add_argument("--text", action="append", metavar="TEXT", help="a text to label (repeatable)")
    p.add_argument("--text-column", help="column holding the text (default: auto-detect)")
    p.add_argument("--label-separator", default=",", help="joins the labels of one text (multi-label)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where to run")

    e = sub.add_parser("evaluate", help="score a model on labelled data", formatter_class=_fmt)
    e.add_argument("--model", required=True, metavar="DIR", help="model folder written by train")
    e.add_argument("--data", required=True, metavar="FILE", help="labelled data file")
    e.add_argument("--text-column", help="column holding the text (default: auto-detect)")
    e.add_argument("--label-column", help="column holding the label (default: auto-detect)")
    e.add_argument("--label-separator", default=",", help="separates the labels of one text (multi-label)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    e.add_argument("--device", choices=DEVICES, default="auto", help="where to run")

    r = sub.add_parser("report", help="summarise a trained model's run folder", formatter_class=_fmt)
    r.add_argument("run", metavar="RUN_DIR", help="model folder written by train")
    r.add_argument("--markdown", metavar="FILE", help="also write the summary to FILE as Markdown")

    c = sub.add_parser("cache", help="show or free the frozen-encoder feature cache", formatter_class=_fmt)
    c.add_argument("action", choices=("info", "clear"), help="info: list entries; clear: delete them all")
    c.add_argument("--cache-dir", help="feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm)")
    return parser


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from .runs import RunSpec, resume_run, train_run

    if args.resume:
        given = [
            f"--{k.replace('_', '-')}"
            for k, v in vars(args).items()
            if k not in ("command", "resume") and v != parser_defaults(parser, k)
        ]
        if given:
            raise BertLSTMError(
                f"--resume continues a run with the settings it started with; leave out {', '.join(given)}"
            )
        resume_run(args.resume)
        return
    if not args.train or not args.output:
        parser.error("train needs --train FILE and --output DIR (or --resume DIR)")
    options = {
        "mode": args.mode,
        "encoder": args.encoder,
        "layers": args.layers,
        "lstm_units": args.lstm_units,
        "lstm_layers": args.lstm_layers,
        "bidirectional": args.bidirectional,
        "dropout": args.dropout,
        "max_length": args.max_length,
        "multi_label": args.multi_label,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lr": args.lr,
        "encoder_lr": args.encoder_lr,
        "weight_decay": args.weight_decay,
        "warmup_ratio": args.warmup_ratio,
        "max_grad_norm": args.max_grad_norm,
        "patience": args.patience,
        "metric": args.metric,
        "class_weight": args.class_weight,
        "threshold": args.threshold,
        "dev_fraction": args.dev_fraction,
        "seed": args.seed,
        "device": args.device,
        "mixed_precision": args.mixed_precision,
        "progress": not args.no_progress,
        "cache": not args.no_cache,
        "cache_dir": args.cache_dir,
        "encode_batch_size": args.encode_batch_size,
        "pad_to_max_length": args.pad_to_max_length,
    }
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else []
    except ValueError:
        raise BertLSTMError(
            f"--seeds {args.seeds}: use distinct whole numbers separated by commas, such as 0,1,2"
        ) from None
    spec = RunSpec(
        train=args.train,
        output=args.output,
        dev=args.dev,
        test=args.test,
        text_column=args.text_column,
        label_column=args.label_column,
        label_separator=args.label_separator,
        seeds=seeds,
        tensorboard=args.tensorboard,
        overwrite=args.overwrite,
        options=options,
    )
    train_run(spec)


def cmd_predict(args: argparse.Namespace) -> None:
    from .classifier import BertLSTMClassifier
    from .data import load_texts
    from .predict import check_predictions_output, write_predictions

    if args.output:
        check_predictions_output(args.output, [args.input] if args.input else [])
    if args.input:
        texts = load_texts(args.input, args.text_column)
    elif args.text:
        texts = args.text
    else:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    clf = BertLSTMClassifier.from_pretrained(args.model, device=args.device)
    proba = clf.predict_proba(texts)
    write_predictions(texts, proba, clf.decide(proba), clf.label_names, args.output, args.label_separator)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .classifier import BertLSTMClassifier
    from .data import load_labelled
    from .metrics import format_report

    clf = BertLSTMClassifier.from_pretrained(args.model, device=args.device)
    separator = args.label_separator if clf.config.multi_label else None
    texts, labels = load_labelled(args.data, args.text_column, args.label_column, separator)
    report = clf.evaluate(texts, labels)
    print(json.dumps(report) if args.json else format_report(report))


def cmd_report(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .reports import summarize

    text = summarize(args.run)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
        print(f"written to {args.markdown}", file=sys.stderr)


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
            f"{key['layers']}  {key['dtype']}  max_length {key['max_length']}  encoder {key['encoder']}  {e['created']}"
        )


def parser_defaults(parser: argparse.ArgumentParser, dest: str) -> object:
    """The default of the ``train`` option stored in ``dest``."""
    train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    return train.get_default(dest)


def _for_cli(message: str) -> str:
    """Library messages name settings in backquotes (`max_length`); here they are options (--max-length)."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m.group(1).replace("_", "-"), message)


def _os_error(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    return f"cannot access{where}: {err.strerror or err}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    commands = {"predict": cmd_predict, "evaluate": cmd_evaluate, "report": cmd_report, "cache": cmd_cache}
    try:
        if args.command == "train":
            cmd_train(args, parser)
        else:
            commands[args.command](args)
    except (BertLSTMError, ValueError) as err:  # bad input, or a setting out of range
        print(f"error: {_for_cli(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be written, a disk that is full
        print(f"error: {_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no model folder was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
