"""The ``bertlstm`` command: parses arguments and calls one library function per command.

Every command's options are generated from its settings dataclasses: each field is an option
(``lstm_units`` → ``--lstm-units``) with the field's help, and for ``train`` what is given on the command line
overrides a ``--config`` file. ``train``'s options are those of the run's task (``--task``, or the config
file's), so ``bertlstm train --task tag --help`` shows a tagger's settings only. Only this module prints, and
only it sets up logging (``-q``/``-v``).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import re
import shlex
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

from .core.config import EncoderSettings, TrainConfig, encoder_lr_for
from .core.distributed import end_process, leave_process_group, process_rank
from .core.encoder_names import encoder_config
from .core.errors import BertLSTMError, BertLSTMWarning, missing_package
from .core.folders import is_model_folder
from .core.settings import load_config_file
from .core.task import Task
from .deploy.checks import check_export, check_serve
from .deploy.config import EvaluateConfig, ExportConfig, PredictConfig, ServeConfig
from .run_config import SECTIONS, RunConfig
from .tasks.registry import TASKS, get_task
from .tune import TuneConfig

LEVELS = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}  # by -v count minus -q count


# --- parsing -----------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """A bad option is one ``error:`` line and a pointer to ``--help``, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _metavar(hint: Any, field: dataclasses.Field) -> str:
    if "metavar" in field.metadata:
        return field.metadata["metavar"]
    if get_origin(hint) is Literal:
        return "{" + ",".join(get_args(hint)) + "}"
    return {int: "N", float: "X"}.get(hint, field.name.split("_")[-1].upper())


def _says_default(field: dataclasses.Field, required: bool) -> bool:
    """Whether a setting's help needs no "(default: ...)": required, repeated, or its help says it already."""
    return required or bool(field.metadata.get("repeat")) or "(default" in field.metadata["help"]


def _option(section: str, field: dataclasses.Field, hint: Any, required: bool) -> dict[str, Any]:
    """The argparse keywords of one settings field: checked by the settings class, not here."""
    default = field.default if field.default is not dataclasses.MISSING else None
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    shown = "none" if shown in (None, "") else shown
    options: dict[str, Any] = {
        "dest": f"{section}.{field.name}",
        "default": argparse.SUPPRESS,  # only what is given overrides a config file
        "help": field.metadata["help"] + ("" if _says_default(field, required) else f" (default: {shown})"),
        "required": required,
    }
    if hint is bool:
        options["action"] = argparse.BooleanOptionalAction
    else:
        options["metavar"] = _metavar(hint, field)
        if field.metadata.get("repeat"):
            options["action"] = "append"
    return options


def add_settings(
    parser: argparse.ArgumentParser,
    sections: dict[str, type],
    required: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> None:
    """One option per settings field, grouped by section (a run's sections are not options themselves, nor
    the run's settings in ``skip``)."""
    for section, cls in sections.items():
        group = parser.add_argument_group(f"{section} settings")
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if section == "run" and field.name in (*SECTIONS, *skip):
                continue
            options = _option(section, field, hints[field.name], field.name in required)
            group.add_argument("--" + field.name.replace("_", "-"), **options)


def add_reading(parser: argparse.ArgumentParser) -> None:
    """How a file is read, for ``predict`` and ``evaluate``: every task's data settings but its files; the
    model's task takes its own (one of another task's is an error)."""
    fields: dict[str, tuple[dataclasses.Field, Any, list[str]]] = {}
    for task in TASKS.values():
        hints = typing.get_type_hints(task.data)
        for field in dataclasses.fields(task.data):
            if field.name not in task.data.FILES:
                fields.setdefault(field.name, (field, hints[field.name], []))[2].append(task.name)
    group = parser.add_argument_group("data settings (those of the model's task apply)")
    for name, (field, hint, tasks) in fields.items():
        options = _option("data", field, hint, required=False)
        if len(tasks) < len(TASKS):
            options["help"] = f"{', '.join(tasks)}: {options['help']}"
        group.add_argument("--" + name.replace("_", "-"), **options)


def _common() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="count", default=0, help="less output (-qq: errors only)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more output, and tracebacks")
    common.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads for PyTorch (default: $OMP_NUM_THREADS, else all cores)"
    )
    return common


def build_parser(task: Task | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``train``'s settings are those of ``task`` (default: classification)."""
    parser = Parser(prog="bertlstm", description="Train and use BERT→LSTM text classifiers and taggers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]
    _train_parser(
        sub.add_parser("train", parents=common, help="train a model (a classifier; --task tag: a tagger)"), task
    )
    _train_parser(
        sub.add_parser(
            "distill", parents=common, help="distil a trained classifier (--teacher) into an LSTM with no encoder"
        ),
        TASKS["student"],
        distill=True,
    )
    p = sub.add_parser("predict", parents=common, help="predict labels (or a tagger's tags and entities)")
    add_settings(p, {"predict": PredictConfig}, required=("model",))
    add_reading(p)
    e = sub.add_parser("evaluate", parents=common, help="score a model on labelled data")
    add_settings(e, {"evaluate": EvaluateConfig}, required=("model", "data"))
    add_reading(e)
    e.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    x = sub.add_parser("export", parents=common, help="export a model as one ONNX graph")
    add_settings(x, {"export": ExportConfig}, required=("model", "output"))
    v = sub.add_parser("serve", parents=common, help="serve a model over HTTP (FastAPI + uvicorn)")
    add_settings(v, {"serve": ServeConfig}, required=("model",))
    _tune_parser(
        sub.add_parser("tune", parents=common, help="search for the best settings on your data (Optuna)"), task
    )
    _report_parser(sub.add_parser("report", parents=common, help="summarise a trained model's run folder"))
    c = sub.add_parser("cache", parents=common, help="show or free the feature cache and the model graphs' cache")
    c.add_argument("action", choices=("info", "clear"), help="info: list entries; clear: delete them all")
    c.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=next(f for f in dataclasses.fields(TrainConfig) if f.name == "cache_dir").metadata["help"],
    )
    c.add_argument("--json", action="store_true", help="info: print the entries as one JSON object")
    return parser


def _tune_parser(t: argparse.ArgumentParser, task: Task | None) -> None:
    task = task or get_task(None)
    t.description = (
        "Search for the best settings of a recipe on your data (Optuna), then train them into --output. Trials of "
        "a frozen recipe read the feature cache: the encoder runs once per layer choice. Settings given below are "
        f"fixed for every trial (those of the {task.name} task); --space FILE changes what is searched."
    )
    t.add_argument("--config", metavar="FILE", help="settings from a .yaml or .json file (options override it)")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    add_settings(t, {"tune": TuneConfig, **RunConfig.sections_of(task)})


def _report_parser(r: argparse.ArgumentParser) -> None:
    r.add_argument("run", metavar="RUN_DIR", help="model folder written by train")
    r.add_argument(
        "--plots", action="store_true", help="draw history.png and confusion_matrix.png into the model folder"
    )
    r.add_argument("--markdown", metavar="FILE", help="write the summary to FILE as Markdown (its plots drawn, linked)")
    r.add_argument(
        "--html", metavar="FILE", help="write one self-contained page to FILE (images embedded) to open in a browser"
    )
    r.add_argument("--json", action="store_true", help="print settings, labels and metrics as one JSON object")


def _train_parser(t: argparse.ArgumentParser, task: Task | None, distill: bool = False) -> None:
    task = task or get_task(None)
    tasks = ", ".join(f"{name} ({spec.summary})" for name, spec in TASKS.items())
    t.description = f"Train a model. Tasks: {tasks}. The settings below are those of the {task.name} task."
    if distill:
        t.description = (
            "Distil a trained classifier (--teacher: a model folder, Hub id or .onnx export) into a student: the "
            "teacher's word-piece embeddings, an LSTM and a linear head, trained on the teacher's logits over the "
            "training texts, augmented copies of them and texts without labels (--unlabeled)."
        )
    t.add_argument("--config", metavar="FILE", help="settings from a .yaml or .json file (options override it)")
    t.add_argument("--dump-config", action="store_true", help="print the resolved settings as YAML and stop")
    t.add_argument("--resume", metavar="DIR", help="continue the killed run whose output was DIR")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    add_settings(t, RunConfig.sections_of(task), skip=("task", "preset") if distill else ())


def _train_task(argv: list[str]) -> Task | None:
    """The task whose settings ``train`` takes: ``--task``, else the ``--config`` file's; None if unknown (a
    bad name is reported when the settings are checked). ``distill`` is the student's."""
    if argv and argv[0] == "distill":
        return TASKS["student"]
    if not argv or argv[0] not in ("train", "tune"):
        return None
    first = argparse.ArgumentParser(add_help=False)
    for option in ("--task", "--config", "--long-text"):
        first.add_argument(option)
    known, _ = first.parse_known_args(argv[1:])
    try:
        given = load_config_file(known.config) if known.config else {}
    except BertLSTMError:
        given = {}
    section = given.get("model")
    model: dict[str, Any] = dict(section) if isinstance(section, dict) else {}
    if known.long_text:
        model["long_text"] = known.long_text
    try:
        return get_task(known.task or given.get("task"), model=model)
    except BertLSTMError:
        return None


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
    given = _given_settings(args)
    if args.command == "distill":  # `train` for the student task
        given["task"] = "student"
    if args.resume:
        from .runs import resume_run  # the training machinery, once the run is known

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
            import yaml  # only to print the settings

            print(_resolved_note(yaml.safe_dump(config.to_dict(), sort_keys=False), config), end="")
            return
        inputs = [args.config] if args.config else []
        config.check_files(inputs)  # files, columns, encoder, output: before PyTorch is imported
        from .runs import train_run  # the training machinery, once everything given is checked

        metrics = train_run(config, command="bertlstm " + shlex.join(args.argv), inputs=inputs)
        print_next_steps(config, quiet=args.json or args.verbose - args.quiet < 0)
    if args.json:
        print(json.dumps(metrics))


def cmd_tune(args: argparse.Namespace) -> None:
    given = _given_settings(args)
    tune = TuneConfig.from_dict(given.pop("tune", {}))
    merged = _merge(load_config_file(args.config) if args.config else {}, given)
    config = RunConfig.from_dict(merged)
    if config.data.dev is None and "dev_fraction" not in (merged.get("training") or {}):
        raise BertLSTMError("a search compares its trials on dev data: give --dev, or hold out --dev-fraction of train")
    fixed = [name for section in ("model", "training") for name in merged.get(section) or {}]
    from .tune import tune_run  # Optuna and the training machinery, once everything given is checked

    inputs = [args.config] if args.config else []
    metrics = tune_run(config, tune, command="bertlstm " + shlex.join(args.argv), inputs=inputs, fixed=fixed)
    print_next_steps(config, quiet=args.json or args.verbose - args.quiet < 0)
    if args.json:
        print(json.dumps(metrics))


def _resolved_note(text: str, config: RunConfig) -> str:
    """The dumped settings, with what ``encoder_lr: auto`` comes to for this encoder in a comment."""
    if config.training.encoder_lr != "auto" or not isinstance(config.model, EncoderSettings):
        return text
    try:
        hidden = (encoder_config(config.model.encoder) or {}).get("hidden_size")
    except BertLSTMError:
        hidden = None
    note = f"{encoder_lr_for('auto', hidden):g} for this encoder" if isinstance(hidden, int) else "set on loading"
    if config.model.mode != "finetune":
        note += "; only mode finetune trains the encoder"
    return text.replace("\n  encoder_lr: auto\n", f"\n  encoder_lr: auto  # {note}\n", 1)


def print_next_steps(config: RunConfig, quiet: bool) -> None:
    """What to do with the model folder just written: the exact commands, and where its plots are."""
    if quiet or config.output is None or process_rank() > 0:
        return
    folder = Path(config.output) / f"seed-{config.seeds[0]}" if len(config.seeds) > 1 else Path(config.output)
    model = shlex.quote(str(folder))
    files = [f for f in (config.data.test, config.data.dev, config.data.train) if f and not f.startswith("hf:")]
    data = shlex.quote(files[0] if files else "DATA.csv")  # evaluate reads local files
    tagger = config.task_spec.name == "tagging"
    sample = "a sentence to tag" if tagger else "a text to label"
    lines = [
        f"bertlstm predict --model {model} --text {shlex.quote(sample)}",
        f"bertlstm predict --model {model} --input {'SENTENCES.conll' if tagger else 'TEXTS.csv'} "
        f"--output {'tags.conll' if tagger else 'predictions.csv'}",
        f"bertlstm evaluate --model {model} --data {data}",
        f"bertlstm serve --model {model}    # then open http://127.0.0.1:8000/",
        f"bertlstm report {model} --html {shlex.quote(str(folder / 'report.html'))}",
    ]
    print("\nnext steps:\n" + "".join(f"  {line}\n" for line in lines), end="")


def cmd_predict(args: argparse.Namespace) -> None:
    from .deploy.files import predict_file  # pandas and the model's back end, only for this command

    given = _given_settings(args)
    values = given["predict"]
    stdin = sys.stdin if "input" not in values and "text" not in values else None  # read as it comes
    predict_file(PredictConfig.from_dict(values), given.get("data"), sys.stdout, stdin)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .deploy.files import evaluate_file  # the model's back end, only for this command

    given = _given_settings(args)
    evaluate_file(EvaluateConfig.from_dict(given["evaluate"]), given.get("data"), sys.stdout, args.json)


def cmd_export(args: argparse.Namespace) -> None:
    settings = ExportConfig.from_dict(_given_settings(args)["export"])
    check_export(settings)
    from .deploy.export import export_onnx  # torch and the ONNX exporter, once the model and output are checked

    export_onnx(settings.model or "", settings.output or "", settings.quantize, settings.overwrite)


def cmd_serve(args: argparse.Namespace) -> None:
    settings = ServeConfig.from_dict(_given_settings(args).get("serve", {}))
    check_serve(settings)
    try:
        from .deploy.serving import serve  # the serve extra: FastAPI, once the model, key and port are checked
    except ImportError as err:
        raise missing_package(err, "serve") from None

    setup_logging(logging.getLogger("bertlstm").level, ("bertlstm", "uvicorn"))
    serve(settings)


def cmd_report(args: argparse.Namespace) -> None:
    if not is_model_folder(args.run):
        raise BertLSTMError(f"{args.run} is not a model folder written by bertlstm train")
    from .reports import check_report_file, draw_plots, report_dict, summarize, write_html, write_markdown  # pandas

    for option, file in (("--markdown", args.markdown), ("--html", args.html)):
        if file is not None:
            check_report_file(file, option)  # before anything is drawn

    if args.plots or args.markdown:
        drawn = draw_plots(args.run)  # none without matplotlib: it says so
        if drawn:
            logging.getLogger("bertlstm").info(f"drew {', '.join(drawn)} into {args.run}")
    if args.markdown:
        logging.getLogger("bertlstm").info(f"wrote {write_markdown(args.run, args.markdown)}")
    if args.html:
        logging.getLogger("bertlstm").info(f"wrote {write_html(args.run, args.html)}: open it in a browser")
    if args.json:
        print(json.dumps(report_dict(args.run)))
    elif not (args.markdown or args.html or args.plots):
        print(summarize(args.run))


def cmd_cache(args: argparse.Namespace) -> None:
    if args.cache_dir is not None and Path(args.cache_dir).exists() and not Path(args.cache_dir).is_dir():
        raise BertLSTMError(f"--cache-dir {args.cache_dir} is a file, not a feature cache folder")
    from .core.feature_cache import FeatureCache  # torch, only for this command
    from .core.graph_cache import clear_graphs, default_graph_dir, graph_folders, size_of  # the folders' graphs

    cache, graphs_root = FeatureCache(args.cache_dir), default_graph_dir()
    if args.action == "clear":
        print(f"freed {cache.clear() / 2**20:.1f} MiB in {cache.root}")
        print(f"freed {clear_graphs(graphs_root) / 2**20:.1f} MiB of ONNX graphs in {graphs_root}")
        return
    graphs = graph_folders(graphs_root)
    size = sum(size_of(folder) for folder in graphs)
    if args.json:
        found = {"root": str(graphs_root), "models": len(graphs), "bytes": size}
        print(json.dumps({"root": str(cache.root), "entries": cache.entries(), "graphs": found}))
    else:
        print(cache.summary())
        print(f"ONNX graphs of model folders: {len(graphs)} ({size / 2**20:.1f} MiB) in {graphs_root}")


COMMANDS = {
    "train": cmd_train,
    "distill": cmd_train,
    "tune": cmd_tune,
    "predict": cmd_predict,
    "export": cmd_export,
    "serve": cmd_serve,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "cache": cmd_cache,
}


# --- output -------------------------------------------------------------------------------------------------
class _Handler(logging.Handler):
    """Log lines on stderr, through tqdm so that they never break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm  # light; only once something is logged

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
        quiet_dependencies()


QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # the Hub's and transformers' bars ("Loading weights", "Writing ...")
    "TRANSFORMERS_VERBOSITY": "error",  # transformers' notes on what it loads
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # gloo's and c10d's notes under a launcher
    "TORCH_LOGS": "-all",  # PyTorch's own log lines (its exporter's notes)
    "ACCELERATE_LOG_LEVEL": "error",
}


def quiet_dependencies() -> None:
    """Below ``-v``, nothing of the libraries underneath reaches the user but their errors: no progress bar,
    note, warning or retry line. Set before they are imported (so nothing is imported to quiet them)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in ("torch", "huggingface_hub", "httpx", "urllib3", "accelerate", "datasets", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)  # the ONNX exporter's notes; "Retrying in 1s"
    warnings.simplefilter("ignore")  # torchvision's, onnxscript's and torch's deprecation notes ...
    warnings.simplefilter("default", BertLSTMWarning)  # ... but what bertlstm warns of about the data


def set_threads(n: int) -> None:
    """PyTorch's intra-op CPU threads for this process (only the command line sets them)."""
    if n < 1:
        raise BertLSTMError(f"--threads must be 1 or more, not {n}")
    import torch  # only when threads are set

    torch.set_num_threads(n)


def _for_cli(message: str) -> str:
    """Library messages name settings in backquotes (`max_length`); here they are options (--max-length)."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m.group(1).replace("_", "-"), message)


def _version() -> str:
    from importlib.metadata import version  # the installed package's own version

    return version("bertlstm")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_train_task(argv)).parse_args(argv)
    args.argv = argv
    verbosity = args.verbose - args.quiet
    if process_rank() > 0:  # under torchrun, the other processes say nothing but errors
        verbosity = -2
    setup_logging(LEVELS[max(-2, min(1, verbosity))])
    if process_rank() > 0:
        warnings.simplefilter("ignore")  # the main process warns once for all
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
    except BrokenPipeError:  # the reader stopped early (`| head`): nothing is wrong, and nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exiting flushes nowhere
        return 0
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


def run() -> None:
    """The ``bertlstm`` command (and ``python -m bertlstm``): :func:`main`, then a quick exit. Tearing down
    every module a run imported (torch, its compiler stack, scikit-learn, pandas) takes about a second after
    the work is done and serves nothing: exit handlers still run and output is flushed, then the process ends.
    (``main`` itself returns, for callers in the same process.)"""
    code = main()
    atexit._run_exitfuncs()  # what libraries registered: temporary folders, logging, child processes
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
