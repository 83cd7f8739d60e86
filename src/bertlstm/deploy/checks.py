"""What ``predict``, ``evaluate``, ``export`` and ``serve`` check of their outputs and addresses before a model
is loaded (or PyTorch imported): output files, exported graphs' names, API keys, ports."""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from ..core.backends import is_export, written_files
from ..core.errors import BertLSTMError, first_line, needs_packages
from ..tasks.registry import ModelRef, find_model
from .config import ExportConfig, ServeConfig

KEY_ENV = "BERTLSTM_API_KEY"  # the API key, when not in a file


def check_output_file(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """A file name predictions may be written to: in an existing folder, not a folder itself, never one of the
    ``inputs`` (the data: that would destroy the true labels; the model's files) nor inside an input folder (a
    model folder), and new or a predictions file bertlstm wrote (:func:`is_predictions_file`)."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise BertLSTMError(f"predictions output {output} is a folder; name a file", "output")
    for item in map(Path, inputs):
        source = item.expanduser().resolve()
        if source == path.resolve() or (path.exists() and source.exists() and source.samefile(path)):
            raise BertLSTMError(
                f"predictions output {output} is {item}, which this command reads; name another file", "output"
            )
        if source.is_dir() and source in path.resolve().parents:
            raise BertLSTMError(
                f"predictions output {output} is inside {item}, which this command reads; name a file elsewhere",
                "output",
            )
    if (path.exists() or path.is_symlink()) and not is_predictions_file(path):
        raise BertLSTMError(
            f"predictions output {output} exists and is not a predictions file bertlstm wrote (bertlstm replaces "
            "only its own outputs): name a new file, or move it away",
            "output",
        )
    if not path.parent.is_dir():
        raise BertLSTMError(f"predictions output {output}: folder {path.parent} does not exist", "output")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise BertLSTMError(f"predictions output {output}: cannot write in {path.parent} (permission denied)")
    return path


# What predict adds to a table: a classifier's label and probabilities (or, beside true labels, the same
# prefixed), a tagger's entities of texts (told by what they hold: users annotate texts with entities too), an
# explanation. A tagger's tags of tokens look like the user's own tagged data (tokens and tags), so an earlier
# such output is not replaced.
PREDICTED = ("prob_", "predicted_prob_", "explanation", "predicted_explanation")
ENTITY = {"text", "type", "start", "end"}  # what each of a tagger's entities holds (and, explained, more)


def is_predictions_file(path: Path) -> bool:
    """A table ``bertlstm predict`` wrote, told by its columns (read from its first line, or a Parquet file's
    schema); never a link, nor a file it cannot read."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        columns = _columns(path)
    except (OSError, ValueError, UnicodeDecodeError, ImportError):
        return False
    names = [str(c) for c in columns]
    if "entities" in names:  # a tagger's answer, or a user's own annotated texts: their rows tell
        return _entities_as_written(path)
    labelled = "label" in names or "predicted_label" in names  # a classifier's answer comes with its label
    return labelled and any(n.startswith(PREDICTED) for n in names)


def _entities_as_written(path: Path, rows: int = 1000) -> bool:
    """Whether the first ``rows`` records' ``entities`` are a tagger's as predict writes them (JSON Lines, or a
    JSON array a record a line; never another format): lists of objects with text, type, start and end, one at
    least not empty. A user's own entities (spaCy's ``[start, end, label]`` triples, say) are not, nor a file
    whose entities are all empty (nothing tells), nor one whose records cannot be read."""
    if path.suffix.lower() not in (".jsonl", ".json"):
        return False
    found = False
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.lstrip("[,").strip() for line, _ in zip(f, range(rows + 1), strict=False)]
        values = [json.loads(line)["entities"] for line in lines if line not in ("", "]")]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return False
    for entities in values:
        if not isinstance(entities, list) or not all(isinstance(e, dict) and ENTITY <= set(e) for e in entities):
            return False
        found = found or bool(entities)
    return found


def _columns(path: Path) -> list[str]:
    """The column names of a CSV, TSV, JSON Lines, JSON (records) or Parquet file, from its first line."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # the parquet extra: what wrote such a file

        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8") as f:
        first = f.readline(1 << 20)
    if suffix in (".jsonl", ".json"):
        record = json.loads(first.lstrip("[,").strip() or "{}")
        return list(record) if isinstance(record, dict) else []
    if suffix in (".csv", ".tsv"):
        return next(csv.reader([first], delimiter="\t" if suffix == ".tsv" else ","), [])
    return []


def check_export_output(output: str | Path, reads: list[Path], overwrite: bool) -> Path:
    """``output`` as an absolute path, if an export may write its files there (see :func:`written_files`)."""
    path = Path(output).expanduser().resolve()
    if path.suffix != ".onnx":
        raise BertLSTMError(f"export output {output}: name a .onnx file", "output")
    if not path.parent.is_dir():
        raise BertLSTMError(f"export output {output}: folder {path.parent} does not exist", "output")
    targets = written_files(path)
    for source in (r.resolve() for r in reads):
        if any(t == source or source in t.parents for t in targets):
            raise BertLSTMError(f"export output {output} would write into {source}, which it reads", "output")
    if any(t.is_dir() for t in targets):
        raise BertLSTMError(f"export output {output}: {', '.join(str(t) for t in targets if t.is_dir())} is a folder")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not is_export(path):
        raise BertLSTMError(
            f"export would replace {', '.join(map(str, existing))}, which bertlstm did not write (bertlstm replaces "
            "only its own exports, even with `overwrite`): name another file",
            "output",
        )
    if existing and not overwrite:
        raise BertLSTMError(
            f"export would replace {', '.join(map(str, existing))}; name another file, or allow replacing "
            "(`overwrite`)",
            "overwrite",
        )
    return path


def check_export(settings: ExportConfig) -> tuple[ModelRef, Path]:
    """The model folder to export, found, and the output it may be written to (absolute)."""
    needs_packages(("onnxruntime", "onnxscript"), "export")
    if not settings.model or not settings.output:
        raise BertLSTMError("an export needs a `model` folder and an `output` .onnx file")
    ref = find_model(settings.model, "torch")
    return ref, check_export_output(settings.output, ref.files(), settings.overwrite)


def check_serve(settings: ServeConfig) -> str | None:
    """The API key read, the port free and the model found: the key requests must carry (or None)."""
    if not settings.model:
        raise BertLSTMError("serving needs a `model`: a model folder or an exported .onnx file")
    key = api_key(settings)
    check_port(settings.host, settings.port)
    find_model(settings.model, "auto" if settings.backend == "onnx" else settings.backend)  # onnx: a folder too
    return key


def api_key(settings: ServeConfig) -> str | None:
    """The key requests must carry: the first line of ``api_key_file``, else ``$BERTLSTM_API_KEY``, else none.
    Without one, only a loopback address may be served, unless ``insecure``."""
    key = os.environ.get(KEY_ENV) or None
    if settings.api_key_file:
        try:
            key = Path(settings.api_key_file).read_text().strip().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as err:
            raise BertLSTMError(f"cannot read an API key from {settings.api_key_file}: {first_line(err)}") from None
    if key is not None and len(key) < 16:
        raise BertLSTMError("the API key is too short to be a secret: use 16 characters or more", "api_key_file")
    if key is None and not _loopback(settings.host) and not settings.insecure:
        raise BertLSTMError(
            f"serving on {settings.host} without an API key lets anyone who reaches it use the model: give "
            f"`api_key_file` (or ${KEY_ENV}), serve on 127.0.0.1, or allow it (`insecure`)",
            "api_key_file",
        )
    return key


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_port(host: str, port: int) -> None:
    """The address can be listened on: checked before the model is loaded, so a busy port fails at once."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn listens
        try:
            probe.bind((host, port))
        except OSError as err:
            raise BertLSTMError(f"cannot listen on {host}:{port}: {err.strerror or err}", "port") from None
