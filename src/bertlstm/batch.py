"""Predictions for files of any size: read a chunk, predict it, write it, and on to the next, so that a file of
millions of lines never sits in memory as tensors. The output keeps every column of the input (an ``id,text``
file comes back with its ids) and adds the label and one probability per class; it is written as CSV, TSV,
JSON Lines, JSON or Parquet, and replaces the output file only once complete."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from .data import TEXT_COLUMNS, column_texts, file_kind, find_column, iter_tables
from .distributed import Shard, current_shard
from .errors import BertLSTMError, missing_package
from .labels import Labels
from .predict import Predictor, load_predictor

logger = logging.getLogger(__name__)
OUTPUT_KINDS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def prediction_columns(proba: np.ndarray, labels: Labels, separator: str = ",") -> pd.DataFrame:
    """The label of each row (multi-label: the names above threshold, joined by ``separator``) and one
    probability column per class."""
    decided = [separator.join(label) if isinstance(label, list) else label for label in labels.decode(proba)]
    rounded = proba.astype(np.float64).round(6)  # float64: the same digits in every format, and after a JSON trip
    columns = {"label": decided, **{f"prob_{name}": rounded[:, i] for i, name in enumerate(labels.names)}}
    return pd.DataFrame(columns)


def predictions_frame(texts: Sequence[str], proba: np.ndarray, labels: Labels, separator: str = ",") -> pd.DataFrame:
    """One row per text: the text, its label, its probabilities."""
    return pd.concat([pd.DataFrame({"text": list(texts)}), prediction_columns(proba, labels, separator)], axis=1)


def check_predictions_output(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """A file name predictions may be written to: .csv, .tsv, .jsonl, .json or .parquet, in an existing
    folder, not a folder itself and never one of the ``inputs`` (that would destroy the true labels)."""
    path = Path(output).expanduser()
    if path.suffix.lower() not in OUTPUT_KINDS:
        raise BertLSTMError(f"predictions output {output}: use a {', '.join(OUTPUT_KINDS)} file name", "output")
    if path.is_dir():
        raise BertLSTMError(f"predictions output {output} is a folder; name a file", "output")
    for item in inputs:
        source = Path(item).expanduser()
        if source.resolve() == path.resolve() or (source.exists() and path.exists() and source.samefile(path)):
            raise BertLSTMError(f"predictions output {output} is the input file; name another file", "output")
    if not path.parent.is_dir():
        raise BertLSTMError(f"predictions output {output}: folder {path.parent} does not exist", "output")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise BertLSTMError(f"predictions output {output}: cannot write in {path.parent} (permission denied)")
    return path


def iter_predictions(
    predictor: Predictor,
    tables: Iterable[pd.DataFrame],
    text_column: str | None,
    separator: str = ",",
    where: str = "the input",
) -> Iterator[pd.DataFrame]:
    """Each table with its predictions added (named ``predicted_...`` when the table has such columns
    already), and a progress bar (texts done) on a terminal."""
    from tqdm.auto import tqdm

    with tqdm(unit="text", desc="predict", disable=None, leave=False) as bar:
        for table in tables:
            text_column = find_column(table, text_column, TEXT_COLUMNS, "text", where)
            texts = column_texts(table, text_column, where)  # empty cells named by their line in the file
            predicted = prediction_columns(predictor.predict_proba(texts), predictor.labels, separator)
            if set(predicted.columns) & set(table.columns):  # e.g. the input's own true labels
                predicted = predicted.add_prefix("predicted_")
            yield pd.concat([table.reset_index(drop=True), predicted], axis=1)
            bar.update(len(texts))


def write_frames(frames: Iterable[pd.DataFrame], target: IO[str] | Path, kind: str = "csv") -> int:
    """Each frame to ``target`` as soon as it comes; rows written. Text formats go to a stream, Parquet to a
    path (one row group per frame)."""
    if kind == "parquet":
        return _write_parquet(frames, Path(target))  # type: ignore[arg-type]
    stream: IO[str] = target  # type: ignore[assignment]
    rows = 0
    for frame in frames:
        if kind in ("jsonl", "json"):
            lines = frame.to_json(orient="records", lines=True, force_ascii=False).strip().splitlines()
            if kind == "json":
                lines = [("[" if rows == 0 and i == 0 else ",") + line for i, line in enumerate(lines)]
            stream.write("\n".join(lines) + "\n")
        else:
            frame.to_csv(stream, index=False, header=rows == 0, sep="\t" if kind == "tsv" else ",")
        stream.flush()
        rows += len(frame)
    if kind == "json":
        stream.write("]\n" if rows else "[]\n")
    return rows


def _write_parquet(frames: Iterable[pd.DataFrame], path: Path) -> int:
    try:
        import pyarrow as pa
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


def predict_file(
    model: str | Path,
    texts: Sequence[str] | None = None,
    input: str | Path | None = None,
    output: str | Path | None = None,
    stream: IO[str] | None = None,
    text_column: str | None = None,
    separator: str = ",",
    backend: str = "auto",
    quantize: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    chunk_rows: int = 10_000,
) -> int:
    """Label ``texts``, or the file ``input`` (read ``chunk_rows`` at a time, every column kept), and write
    the predictions to the file ``output`` (replaced only when complete) or as CSV to ``stream``; returns how
    many texts were labelled. Everything that can be checked is checked before the model is loaded. Under
    ``torchrun`` the processes share the chunks, and the main one writes them all, in order."""
    path = check_predictions_output(output, [input] if input is not None else []) if output is not None else None
    if input is not None:
        file_kind(input)  # a missing or unreadable input is reported before the model loads
    elif not texts:
        raise BertLSTMError("no texts to label")
    shard = current_shard()
    if shard.world > 1 and device == "auto":
        device = _local_device()
    predictor = load_predictor(model, backend, quantize, device, batch_size)
    if input is not None:
        tables: Iterable[pd.DataFrame] = iter_tables(input, chunk_rows)
    else:
        given = pd.DataFrame({"text": list(texts or [])})
        given.attrs.update(kind="table", start=0)
        tables = [given]
    numbers: list[int] = []  # with several processes: which chunks this one predicts
    if shard.world > 1:
        tables = _my_chunks(tables, shard, numbers)
    frames = iter_predictions(predictor, tables, text_column, separator, str(input or "the texts"))
    if shard.world > 1:
        frames = _in_order(frames, numbers, shard, path.parent if path is not None else None)
        if not shard.is_main:
            return sum(len(frame) for frame in frames)  # this process's work is in the shared parts
    return _write(frames, path, stream)


def _write(frames: Iterable[pd.DataFrame], path: Path | None, stream: IO[str] | None) -> int:
    """To ``path`` through a temporary file renamed into place, or as CSV to ``stream``."""
    if path is None:
        return write_frames(frames, stream or _stdout())
    kind = OUTPUT_KINDS[path.suffix.lower()]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if kind == "parquet":
            rows = write_frames(frames, tmp, kind)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                rows = write_frames(frames, f, kind)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info(f"wrote {rows} predictions to {path}")
    return rows


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
    import torch

    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


def _stdout() -> IO[str]:
    import sys

    return sys.stdout
