"""Predictions and evaluations from files, for any task: read a chunk, predict it, write it, and on to the
next, so that a file of millions of lines never sits in memory as tensors.

The model's task decides how inputs are read and what is added (a label and probabilities; tags; entities);
everything else is shared: the output checks, the one writer (CSV, TSV, JSON Lines, JSON, Parquet or CoNLL,
replacing the output file only once complete) and, under ``torchrun``, sharing the chunks among processes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..core.distributed import Shard, current_shard
from ..core.errors import BertLSTMError, missing_package
from ..core.folders import atomic_file
from ..core.graph_cache import finish, open_predictor
from ..tasks.registry import ModelRef
from .checks import check_output_file
from .config import EvaluateConfig, PredictConfig
from .engines import find

if TYPE_CHECKING:
    import pandas as pd

    from ..core.backends import Predictor

logger = logging.getLogger(__name__)


def predict_file(
    settings: PredictConfig,
    reading: dict[str, Any] | None = None,
    stream: IO[str] | None = None,
    lines: IO[str] | None = None,
) -> int:
    """Predict ``settings.text``, the file ``settings.input`` (read ``chunk_rows`` at a time, every column
    kept) or, with neither, the ``lines`` of a stream (stdin: read as they come, a batch at a time), and write
    the predictions to the file ``settings.output`` (replaced only when complete) or to ``stream`` (stdout, as
    each chunk is done); returns how many rows were predicted. ``reading``: the model's task's data settings
    (``{"text_column": "body"}``). Everything that can be checked, the model included, is checked before any
    input is read. Under ``torchrun`` the processes share the chunks, and the main one writes them all."""
    if settings.input is None and not settings.text and lines is None:
        raise BertLSTMError("no texts to label")
    if settings.input is not None and not Path(settings.input).is_file():
        found = Path(settings.input).exists()
        raise BertLSTMError(
            f"{settings.input} is a folder, not a file" if found else f"file not found: {settings.input}"
        )
    ref = find(settings.model or "", settings.backend)
    data = ref.reading(reading)
    kind = ref.task.output_kind(settings.output, settings.input)
    if settings.input is not None:
        ref.task.check_file(settings.input, data, False)  # its columns, from its first line
    reads: list[str | Path] = [*([settings.input] if settings.input else []), *ref.files()]
    path = check_output_file(settings.output, reads) if settings.output is not None else None
    _check_explain_label(ref, settings.explain_label)
    shard = current_shard()
    predictor = _predictor(ref, settings, shard)
    if settings.input is not None:
        tables = predictor.read_file(settings.input, settings.chunk_rows)
    else:
        chunks = [list(settings.text)] if settings.text else line_chunks(lines, predictor.batch_size)
        tables = text_frames(chunks, settings.chunk_rows)
    where = settings.input or "the texts"
    frames = _shared(tables, lambda table: predictor.predict_frame(table, data, where), shard, path)
    if not shard.is_main:
        return sum(len(frame) for frame in frames)  # the main process writes them
    rows = write(frames, path, kind, stream)
    if path is not None:
        logger.info(f"wrote {rows} predictions to {path}")
    finish(ref, predictor)  # a folder answered on PyTorch: its graph, for the next run
    return rows


def _check_explain_label(ref: ModelRef, label: str | None) -> None:
    """A label to explain must be one of a classifier's, checked from its config before the model loads."""
    if label is None or ref.task.name == "tagging":  # a tagger explains the entities it finds
        return
    names = [str(name) for name in (ref.meta.get("labels") or {}).get("names") or []]
    if names and label not in names:
        raise BertLSTMError(
            f"`explain_label` {label!r} is not a label of this model: {', '.join(names)}", "explain_label"
        )


def _predictor(ref: ModelRef, settings: PredictConfig, shard: Shard) -> Predictor:
    """The model ready to predict (under torchrun, on this process's GPU) and, with ``explain``, to say why."""
    device = _local_device() if shard.world > 1 and settings.device == "auto" else settings.device
    gradients = settings.explain and settings.explain_method != "occlusion"
    if settings.explain_method is None:  # the default follows gradients where Captum is there to follow them
        gradients = gradients and importlib.util.find_spec("captum") is not None
    predictor = open_predictor(
        ref,
        settings.backend,
        settings.quantize,
        device,
        settings.batch_size,
        gradients,
        shard.world,
        wait=False,
        precision=settings.precision,
    )
    if settings.explain:
        method = predictor.explain_method(settings.explain_method)
        predictor.explaining = {"method": method, "steps": settings.explain_steps, "label": settings.explain_label}
    return predictor


def _shared(
    tables: Iterable[pd.DataFrame], predict: Callable[[pd.DataFrame], pd.DataFrame], shard: Shard, path: Path | None
) -> Iterator[pd.DataFrame]:
    """``predict`` over the tables, with a progress bar. With several processes each predicts its share of the
    chunks; the main process yields all the predicted chunks in order, the others their own."""
    if shard.world == 1:
        return _progress(predict(table) for table in tables)
    numbers: list[int] = []  # which chunks this process predicts
    frames = _progress(predict(table) for table in _my_chunks(tables, shard, numbers))
    return _in_order(frames, numbers, shard, path.parent if path is not None else None)


def evaluate_file(
    settings: EvaluateConfig,
    reading: dict[str, Any] | None = None,
    stream: IO[str] | None = None,
    as_json: bool = False,
) -> tuple[dict[str, Any], str]:
    """Score a model (folder, Hub id or export) on the labelled file ``settings.data``, read with the model's
    task's data settings ``reading``: the full evaluation report, and the report as tables, also written to
    ``stream`` (as one JSON object with ``as_json``) before a folder scored on PyTorch has its graph exported.
    The data file and the settings are checked before the model is loaded."""
    if not settings.data or not Path(settings.data).is_file():
        raise BertLSTMError(f"file not found: {settings.data}")
    ref = find(settings.model or "", settings.backend)
    data = ref.reading(reading)
    ref.task.check_file(settings.data, data, True)  # its columns, from its first line
    world = current_shard().world
    predictor = open_predictor(
        ref,
        settings.backend,
        settings.quantize,
        settings.device,
        settings.batch_size,
        False,
        world,
        wait=False,
        precision=settings.precision,
    )
    predictor.progress = f"evaluate {Path(settings.data).name}"
    report = predictor.evaluate_file(settings.data, data)
    tables = predictor.format_report(report)
    if stream is not None:
        stream.write((json.dumps(report) if as_json else tables) + "\n")
        stream.flush()
    finish(ref, predictor)  # a folder scored on PyTorch: its graph, for the next run
    return report, tables


def line_chunks(lines: Iterable[str] | None, rows: int) -> Iterator[list[str]]:
    """The non-blank lines of a stream in chunks of up to ``rows``: a chunk ends early when no more input is
    waiting, so that lines typed one by one are answered one by one, and a pipe's in full batches."""
    chunk: list[str] = []
    for line in lines or ():
        if line.strip():
            chunk.append(line.rstrip("\n"))
        if chunk and (len(chunk) >= rows or not _waiting(lines)):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _waiting(lines: Any) -> bool:
    """Whether more of ``lines`` can be read at once (a stream with data in it; any list)."""
    try:
        return bool(select.select([lines], [], [], 0)[0])
    except (TypeError, ValueError, OSError):  # not a file with a descriptor: a list of texts
        return True


def text_frames(chunks: Iterable[list[str]], rows: int) -> Iterator[pd.DataFrame]:
    """Chunks of raw texts as one-column tables (``text``) of up to ``rows`` rows."""
    import pandas as pd  # only once the checks are done: a typo is an error within a second

    start = 0
    for chunk in chunks:
        for first in range(0, len(chunk), rows):
            frame = pd.DataFrame({"text": chunk[first : first + rows]})
            frame.attrs.update(kind="table", start=start)
            start += len(frame)
            yield frame


# --- the one writer ----------------------------------------------------------------------------------------
def write(frames: Iterable[pd.DataFrame], path: Path | None, kind: str, stream: IO[str] | None = None) -> int:
    """Every frame to ``path`` (through a temporary file renamed into place) or to ``stream`` (stdout), as
    ``kind``: csv, tsv, jsonl, json, parquet or conll; rows written."""
    if path is None:
        return write_frames(frames, stream or sys.stdout, kind)
    with atomic_file(path) as tmp:
        if kind == "parquet":
            return write_parquet(frames, tmp)
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            return write_frames(frames, f, kind)


def _json_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def write_frames(frames: Iterable[pd.DataFrame], stream: IO[str], kind: str = "csv") -> int:
    """Each frame to ``stream`` as soon as it comes; rows written."""
    rows, document = 0, None
    for frame in frames:
        if kind in ("jsonl", "json"):
            lines = frame.to_json(orient="records", lines=True, force_ascii=False).strip().splitlines()
            if kind == "json":
                lines = [("[" if rows == 0 and i == 0 else ",") + line for i, line in enumerate(lines)]
            stream.write("".join(line + "\n" for line in lines))
        elif kind == "conll":
            document = _write_conll(frame, stream, document, first=rows == 0)
        else:  # a list or a mapping in a cell (an explanation) as JSON
            frame = frame.apply(lambda column: column.map(_json_cell) if column.dtype == object else column)
            frame.to_csv(stream, index=False, header=rows == 0, sep="\t" if kind == "tsv" else ",")
        stream.flush()
        rows += len(frame)
    if kind == "json":
        stream.write("]\n" if rows else "[]\n")
    return rows


def _write_conll(frame: pd.DataFrame, stream: IO[str], document: Any, first: bool) -> Any:
    """Sentences (``tokens``, ``tags``, ``document``) as CoNLL columns, ``token<TAB>tag``: a blank line between
    sentences, ``-DOCSTART-`` where a document starts; returns the last sentence's document."""
    for tokens, tags, doc in zip(frame["tokens"], frame["tags"], frame["document"], strict=True):
        lines = ["-DOCSTART-\tO", ""] if doc != document and doc else []
        lines += [f"{token}\t{tag}" for token, tag in zip(tokens, tags, strict=True)]
        stream.write(("" if first else "\n") + "\n".join(lines) + "\n")
        document, first = doc, False
    return document


def write_parquet(frames: Iterable[pd.DataFrame], path: Path) -> int:
    """Each frame as one row group of a Parquet file; rows written."""
    try:
        import pyarrow as pa  # the parquet extra: only for .parquet output
        import pyarrow.parquet as pq
    except ImportError as err:
        raise missing_package(err, "parquet") from None
    rows, writer = 0, None
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))  # later chunks take the first one's column types
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return rows


# --- progress, and several processes -----------------------------------------------------------------------
def _progress(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The frames as they come, with a progress bar (rows done) on a terminal."""
    from tqdm.auto import tqdm  # the bar, only once predictions run

    with tqdm(unit="row", desc="predict", disable=None, leave=False) as bar:
        for frame in frames:
            yield frame
            bar.update(len(frame))


def _my_chunks(tables: Iterable[pd.DataFrame], shard: Shard, numbers: list[int]) -> Iterator[pd.DataFrame]:
    """Chunk ``i`` goes to process ``i mod N``; the numbers of the chunks yielded go to ``numbers``."""
    for i, table in enumerate(tables):
        if i % shard.world == shard.rank:
            numbers.append(i)
            yield table


def _in_order(
    frames: Iterable[pd.DataFrame], numbers: list[int], shard: Shard, near: Path | None
) -> Iterator[pd.DataFrame]:
    """Every process writes its predicted chunks to a shared folder; then the main process yields all of
    them in chunk order (the others yield their own, to count them), and the folder goes."""
    folder = Path(shard.gather(tempfile.mkdtemp(prefix=".bertlstm-predict-", dir=near) if shard.is_main else "")[0])
    try:
        mine = []
        for k, frame in enumerate(frames):
            part = folder / f"{numbers[k]:09d}.jsonl"  # JSON Lines keeps numbers and strings
            frame.to_json(part, orient="records", lines=True, force_ascii=False)
            mine.append(frame)
        shard.barrier()
        if shard.is_main:
            import pandas as pd  # what the predictor imported already

            for part in sorted(folder.glob("*.jsonl")):
                yield pd.read_json(part, lines=True, dtype=False, precise_float=True)
        else:
            yield from mine
        shard.barrier()
    finally:
        if shard.is_main:
            shutil.rmtree(folder, ignore_errors=True)


def _local_device() -> str:
    """Under a launcher, each process's own GPU (LOCAL_RANK), or the CPU."""
    import torch  # only under a launcher with several processes

    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
