"""The ``bertlstm`` command: parses arguments and calls one library function per command.

The ``train`` options are generated from the settings dataclasses (:mod:`bertlstm.config`): each field is an
option (``lstm_units`` → ``--lstm-units``) with the field's help, and what is given on the command line
overrides a ``--config`` file. Only this module prints, and only it sets up logging (``-q``/``-v``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shlex
import sys
import typing
import warnings
from typing import Any, Literal, get_args, get_origin

from .config import DataConfig, ModelConfig, RunConfig, ServeConfig, TaggerConfig, TrainConfig, load_config_file
from .distributed import end_process, leave_process_group, process_rank
from .errors import BertLSTMError, missing_package

SECTIONS: dict[str, type] = {"run": RunConfig, "data": DataConfig, "model": ModelConfig, "training": TrainConfig}
SERVE: dict[str, type] = {"serve": ServeConfig}


# --- parsing -----------------------------------------------------------------------------------------------
def _metavar(hint: Any, field: dataclasses.Field) -> str:
    if "metavar" in field.metadata:
        return field.metadata["metavar"]
    if get_origin(hint) is Literal:
        return "{" + ",".join(get_args(hint)) + "}"
    return {int: "N", float: "X"}.get(hint, field.name.split("_")[-1].upper())


def add_settings(parser: argparse.ArgumentParser, sections: dict[str, type]) -> None:
    """One option per settings field, grouped by section; values are checked by the config, not here."""
    for section, cls in sections.items():
        group = parser.add_argument_group(f"{section} settings")
        hints = typing.get_type_hints(cls)
        fields = list(dataclasses.fields(cls))
        if cls is ModelConfig:  # and the tagger's own settings, with the model's
            fields += [f for f in dataclasses.fields(TaggerConfig) if f.name not in {g.name for g in fields}]
            hints = {**typing.get_type_hints(TaggerConfig), **hints}
        tagging = {f.name: f.default for f in dataclasses.fields(TaggerConfig)}
        for field in fields:
            if section == "run" and field.name in RunConfig.SECTIONS:
                continue
            default = field.default if field.default is not dataclasses.MISSING else None
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            shown = "none" if shown in (None, "") else shown
            if cls is ModelConfig and tagging.get(field.name, default) != default:
                shown = f"{shown}; tagging: {tagging[field.name]}"
            options: dict[str, Any] = {
                "dest": f"{section}.{field.name}",
                "default": argparse.SUPPRESS,  # only what is given overrides the config file
                "help": f"{field.metadata['help']} (default: {shown})",
            }
            if hints[field.name] is bool:
                options["action"] = argparse.BooleanOptionalAction
            else:
                options["metavar"] = _metavar(hints[field.name], field)
            group.add_argument("--" + field.name.replace("_", "-"), **options)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="count", default=0, help="less output (-qq: errors only)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more output, and tracebacks")
    common.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads for PyTorch (default: $OMP_NUM_THREADS, else all cores)"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertlstm", description="Train and use BERT→LSTM text classifiers and taggers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]
    t = sub.add_parser("train", parents=common, help="train a classifier (or, with --task tag, a tagger)")
    t.add_argument("--config", metavar="FILE", help="settings from a .yaml or .json file (options override it)")
    t.add_argument("--dump-config", action="store_true", help="print the resolved settings as YAML and stop")
    t.add_argument("--resume", metavar="DIR", help="continue the killed run whose output was DIR")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    add_settings(t, SECTIONS)

    p = sub.add_parser("predict", parents=common, help="predict labels for texts")
    p.add_argument("--model", required=True, metavar="PATH", help="model folder, Hub id, or exported .onnx file")
    p.add_argument("--input", metavar="FILE", help="file of texts to label (otherwise --text or stdin lines)")
    p.add_argument("--output", metavar="FILE", help=".csv .tsv .jsonl .json or .parquet (default: CSV on stdout)")
    p.add_argument("--text", action="append", metavar="TEXT", help="a text to label (repeatable)")
    p.add_argument("--text-column", help="column holding the text (default: auto-detect)")
    p.add_argument("--label-separator", default=",", help="joins the labels of one text (multi-label)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"), help="auto: onnx for .onnx")
    p.add_argument("--quantize", choices=("int8",), help="torch back end: int8 linear and LSTM layers")
    p.add_argument("--batch-size", type=int, metavar="N", help="texts per forward pass (default: 32 on a CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")

    x = sub.add_parser("export", parents=common, help="export a model as one ONNX graph")
    x.add_argument("--model", required=True, metavar="DIR", help="model folder written by train")
    x.add_argument("--format", default="onnx", choices=("onnx",), help="export format")
    x.add_argument("--quantize", choices=("int8",), help="onnxruntime dynamic int8 quantization")
    x.add_argument("--output", required=True, metavar="FILE", help="the .onnx file; tokenizer and metadata beside it")

    v = sub.add_parser("serve", parents=common, help="serve a model over HTTP (FastAPI + uvicorn)")
    add_settings(v, SERVE)

    e = sub.add_parser("evaluate", parents=common, help="score a model on labelled data")
    e.add_argument("--model", required=True, metavar="DIR", help="model folder written by train")
    e.add_argument("--data", required=True, metavar="FILE", help="labelled data file")
    e.add_argument("--text-column", help="column holding the text (default: auto-detect)")
    e.add_argument("--label-column", help="column holding the label (default: auto-detect)")
    e.add_argument("--label-separator", default=",", help="separates the labels of one text (multi-label)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    e.add_argument("--tag-column", type=int, default=-1, help="tagger: the CoNLL column holding the tag")
    e.add_argument("--tag-scheme", default="auto", choices=("auto", "iob1", "iob2", "bioes"), help="tagger: tags as")

    r = sub.add_parser("report", parents=common, help="summarise a trained model's run folder")
    r.add_argument("run", metavar="RUN_DIR", help="model folder written by train")
    r.add_argument("--markdown", metavar="FILE", help="also write the summary to FILE as Markdown")
    r.add_argument("--json", action="store_true", help="print settings, labels and metrics as one JSON object")

    c = sub.add_parser("cache", parents=common, help="show or free the frozen-encoder feature cache")
    c.add_argument("action", choices=("info", "clear"), help="info: list entries; clear: delete them all")
    c.add_argument("--cache-dir", help="feature cache folder (default: $BERTLSTM_CACHE or ~/.cache/bertlstm)")
    c.add_argument("--json", action="store_true", help="info: print the entries as one JSON object")
    return parser


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, as a nested dict like a config file's."""
    values: dict[str, Any] = {}
    for dest, value in vars(args).items():
        section, _, name = dest.partition(".")
        if not name:
            continue
        if section == "run":
            values[name] = value
        else:
            values.setdefault(section, {})[name] = value
    return values


def _merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in given.items():
        merged[key] = {**(merged.get(key) or {}), **value} if isinstance(value, dict) else value
    return merged


# --- commands: each calls one library function --------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> None:
    from .runs import resume_run, train_run

    given = _given_settings(args)
    if args.resume:
        flags = ["--" + dest.partition(".")[2].replace("_", "-") for dest in vars(args) if "." in dest]
        if flags or args.config:
            raise BertLSTMError(
                "--resume continues a run with the settings it started with; leave out "
                + ", ".join(flags + (["--config"] if args.config else []))
            )
        metrics = resume_run(args.resume)
    else:
        config = RunConfig.from_dict(_merge(load_config_file(args.config) if args.config else {}, given))
        if args.dump_config:
            import yaml

            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            return
        metrics = train_run(config, command="bertlstm " + shlex.join(args.argv))
    if args.json:
        print(json.dumps(metrics))


def cmd_predict(args: argparse.Namespace) -> None:
    from .batch import predict_file
    from .model_folder import task_of

    texts = args.text
    if args.input is None and texts is None:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if task_of(args.model) == "tagging":
        from .tagger import tag_file

        tag_file(
            args.model,
            texts,
            args.input,
            args.output,
            sys.stdout,
            args.text_column,
            args.device,
            args.batch_size,
            args.backend,
            args.quantize,
        )
        return
    options = {"text_column": args.text_column, "separator": args.label_separator, "backend": args.backend}
    options.update(quantize=args.quantize, device=args.device, batch_size=args.batch_size)
    predict_file(args.model, texts, args.input, args.output, sys.stdout, **options)


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_onnx

    export_onnx(args.model, args.output, args.quantize)


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        from .serving import serve
    except ImportError as err:
        raise missing_package(err, "serve") from None

    setup_logging(logging.getLogger("bertlstm").level, ("bertlstm", "uvicorn"))
    serve(ServeConfig.from_dict(_given_settings(args).get("serve", {})))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .metrics import format_report
    from .runs import evaluate_file

    report = evaluate_file(
        args.model,
        args.data,
        args.text_column,
        args.label_column,
        args.label_separator,
        args.device,
        args.tag_column,
        args.tag_scheme,
    )
    print(json.dumps(report) if args.json else format_report(report))


def cmd_report(args: argparse.Namespace) -> None:
    from .reports import report_dict, write_report

    text = write_report(args.run, args.markdown)
    print(json.dumps(report_dict(args.run)) if args.json else text)


def cmd_cache(args: argparse.Namespace) -> None:
    from .feature_cache import FeatureCache

    cache = FeatureCache(args.cache_dir)
    if args.action == "clear":
        print(f"freed {cache.clear() / 2**20:.1f} MiB in {cache.root}")
    elif args.json:
        print(json.dumps({"root": str(cache.root), "entries": cache.entries()}))
    else:
        print(cache.summary())


COMMANDS = {
    "train": cmd_train,
    "predict": cmd_predict,
    "export": cmd_export,
    "serve": cmd_serve,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "cache": cmd_cache,
}
LEVELS = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}  # by -v count minus -q count


# --- output -------------------------------------------------------------------------------------------------
class _Handler(logging.Handler):
    """Log lines on stderr, through tqdm so that they never break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(level: int, names: tuple[str, ...] = ("bertlstm",)) -> None:
    """The loggers ``names`` log to stderr at ``level``; the libraries below only say what is wrong."""
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, _Handler)] + [_Handler()]
        logger.setLevel(level)
        logger.propagate = False
    warnings.formatwarning = lambda msg, *args, **kwargs: f"warning: {msg}\n"
    if level > logging.DEBUG:
        logging.getLogger("torch").setLevel(logging.ERROR)  # the ONNX exporter's notes on its own internals
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a command's output
        disable_progress_bars()


def set_threads(n: int) -> None:
    """PyTorch's intra-op CPU threads for this process (only the command line sets them)."""
    if n < 1:
        raise BertLSTMError(f"--threads must be 1 or more, not {n}")
    import torch

    torch.set_num_threads(n)


def _for_cli(message: str) -> str:
    """Library messages name settings in backquotes (`max_length`); here they are options (--max-length)."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m.group(1).replace("_", "-"), message)


def _version() -> str:
    from importlib.metadata import version

    return version("bertlstm")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    verbosity = args.verbose - args.quiet
    if process_rank() > 0:  # under torchrun, the other processes say nothing but errors
        verbosity = -2
        warnings.simplefilter("ignore")
    setup_logging(LEVELS[max(-2, min(1, verbosity))])
    try:
        if args.threads is not None:
            set_threads(args.threads)
        COMMANDS[args.command](args)
        leave_process_group()  # under torchrun: all processes finished their work
    except (BertLSTMError, ValueError) as err:  # bad input, or a setting out of range
        if verbosity > 0:
            raise
        print(f"error: {_for_cli(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be written, a disk that is full
        if verbosity > 0:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(f"error: cannot access{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no model folder was written", file=sys.stderr)
        return 130
    end_process(0)  # under torchrun: exit here, past gloo's teardown
    return 0


if __name__ == "__main__":
    sys.exit(main())
