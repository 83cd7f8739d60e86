"""Folders on disk, written and read safely: the one place that creates, replaces, locks and verifies them.

* :func:`check_output` decides whether a path may be (re)written: never the working folder or one of its
  parents, never a folder that holds an input file, and an existing folder only when it is empty or one we
  wrote (a bertlstm model folder) unless ``overwrite`` is set.
* :func:`output_lock` makes a second run on the same output fail at once instead of racing the first.
* :func:`atomic_folder` is the one writer behind model folders, checkpoints and feature-cache entries: fill a
  temporary folder beside the target, then rename it into place; a crash leaves the old target untouched and
  only a hidden temporary folder, which :func:`remove_leftovers` deletes on the next run.
* Saved weight and tokenizer files are recorded by SHA-256 in ``config.json`` and verified on load
  (:func:`read_config`, :func:`check_files`): a damaged or swapped file is an error, never a wrong answer.
* :func:`save_model_folder` and :func:`load_model_folder` write and read a whole model folder for any task:
  config sections, head weights, the encoder with its tokenizer, and the training record. Loading is local
  only, safetensors only, and never runs code shipped in the folder.
"""

from __future__ import annotations

import copy
import csv
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .errors import BertLSTMError

# 2: config.json records the SHA-256 of every weight and tokenizer file; 3: labels in their own section
FORMAT_VERSION = 3
CONFIG_NAME, WEIGHTS_NAME, ENCODER_DIR = "config.json", "model.safetensors", "encoder"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")  # never loaded from a model folder
_CHUNK = 1 << 24  # bytes hashed at a time


# --- where output may go -----------------------------------------------------------------------------
def is_model_folder(path: str | os.PathLike) -> bool:
    """A folder with a ``config.json`` that carries a bertlstm format version."""
    try:
        meta = json.loads((Path(path) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and type(meta.get("format_version")) is int


def check_output(
    target: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    replaceable: Callable[[Path], bool] = is_model_folder,
) -> Path:
    """The absolute path ``target`` names, if a new folder may be written there; else a clear error.

    Refused always: the working folder or one of its parents, and a folder that holds one of ``inputs``.
    Refused unless ``overwrite``: an existing file, and a non-empty folder that ``replaceable`` does not accept.
    """
    path = Path(target).expanduser().resolve()
    if path.parent == path:
        raise BertLSTMError(f"output {target}: cannot replace the file-system root", "output")
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise BertLSTMError(f"output {target} is the working folder or holds it; name a new folder", "output")
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if source == path or path in source.parents:
            raise BertLSTMError(f"output {target} holds the input file {item}; name another folder", "output")
    if path.is_dir():
        if any(path.iterdir()) and not replaceable(path) and not overwrite:
            raise BertLSTMError(
                f"output {target} is a folder with other files in it, not a bertlstm model folder; "
                "name a new folder, or allow replacing it (`overwrite`)",
                "overwrite",
            )
    elif path.exists() and not overwrite:
        raise BertLSTMError(
            f"output {target} is an existing file; name a folder, or allow replacing it (`overwrite`)", "overwrite"
        )
    check_writable(path.parent)
    return path


def check_writable(folder: Path) -> None:
    """``folder``, or the nearest ancestor that exists, must be a folder we can create files in."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BertLSTMError(f"cannot create {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BertLSTMError(f"cannot write in {existing}: permission denied")


@contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a hidden ``.NAME.lock`` beside it) for the block.

    A second holder is refused at once with a clear error. The lock dies with its process (``flock``), so a
    killed run never blocks the next one; the lock file is removed on release.
    """
    lock = target.with_name(f".{target.name}.lock")
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BertLSTMError(
                f"another bertlstm run (process {holder}) is writing {target}; wait for it to end or name "
                "another output",
                "output",
            ) from None
        try:
            locked_the_current_file = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            locked_the_current_file = False
        if locked_the_current_file:  # not a file its previous holder removed between our open and our lock
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        with suppress(OSError):
            os.unlink(lock)
        os.close(fd)


# --- writing -------------------------------------------------------------------------------------------
@contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` to fill; when the block ends, it becomes ``target``.

    An existing ``target`` is replaced, or with ``replace=False`` kept (another writer of the same content
    finished first) and the new folder discarded. On an error the temporary folder is removed and
    ``target`` is untouched. Files get the permissions the umask allows (``mkdtemp`` and safetensors
    write private ones), so a model saved for a team can be read by it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _permissions_from_umask(tmp)
        if not (target.exists() or target.is_symlink()):
            try:
                tmp.rename(target)
                return
            except OSError:
                if replace or not target.is_dir():
                    raise
        if not replace:
            shutil.rmtree(tmp)
            return
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        _remove(old)
        target.rename(old)
        tmp.rename(target)
        _remove(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(target: Path) -> list[Path]:
    """Delete what a killed writer of ``target`` left: hidden ``.NAME.tmp-*`` and ``.NAME.old-*`` folders.

    Call it only while holding :func:`output_lock` on ``target``: then no live writer owns them.
    """
    found = [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]
    for path in found:
        _remove(path)
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def _permissions_from_umask(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


# --- checksums ------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of the head weights and of every file in ``encoder/`` (weights, config, tokenizer)."""
    names = [WEIGHTS_NAME] + sorted(p.relative_to(folder).as_posix() for p in (folder / ENCODER_DIR).rglob("*"))
    return {name: file_sha256(folder / name) for name in names if (folder / name).is_file()}


# --- reading --------------------------------------------------------------------------------------------
def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a model folder, checked for shape and version; every problem is a clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BertLSTMError(f"model folder {folder} does not exist" if not folder.exists() else f"{folder} is a file")
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise BertLSTMError(f"{folder} is not a bertlstm model folder (no {CONFIG_NAME})")
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BertLSTMError(f"{config_file} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise BertLSTMError(f"{config_file} is not a bertlstm model config (not a JSON object)")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise BertLSTMError(f"{config_file}: format_version must be a whole number, not {version!r}")
    if version > FORMAT_VERSION:
        raise BertLSTMError(f"{folder} was written by a newer bertlstm (format {version}); upgrade bertlstm")
    for section, required in (("model", True), ("training", False), ("files", version >= 2), ("labels", False)):
        if (required or section in meta) and not isinstance(meta.get(section), dict):
            raise BertLSTMError(f"{config_file}: the {section!r} section is missing or not an object")
    if version < 3 and "labels" not in meta:  # label names and thresholds lived in the model section
        model = dict(meta["model"])
        names, thresholds = model.pop("label_names", None), model.pop("thresholds", None) or None
        meta = {**meta, "model": model, "labels": {"names": names, "thresholds": thresholds}}
        meta["labels"]["multi_label"] = bool(model.get("multi_label", False))
    if "labels" not in meta:
        raise BertLSTMError(f"{config_file}: the 'labels' section is missing or not an object")
    return meta


def task_of(path: str | os.PathLike) -> str:
    """What a model folder or an exported graph does (``classification`` or ``tagging``, as its metadata
    says); anything else (a Hub id) counts as a classifier."""
    if is_model_folder(path):
        return read_config(path).get("task", "classification")
    companion = Path(path).with_suffix(".json")
    if Path(path).suffix == ".onnx" and companion.is_file():
        with suppress(OSError, ValueError, AttributeError):
            return json.loads(companion.read_text()).get("task", "classification")
    return "classification"


def check_files(folder: Path, meta: dict[str, Any]) -> None:
    """Verify recorded checksums; refuse pickled weights and a missing encoder or tokenizer."""
    encoder = folder / ENCODER_DIR
    if not encoder.is_dir():
        raise BertLSTMError(f"{folder} has no {ENCODER_DIR}/ folder (the encoder's weights and tokenizer)")
    pickled = sorted(p.name for p in encoder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise BertLSTMError(
            f"{encoder} holds pickled files ({', '.join(pickled)}); a model folder is loaded from safetensors "
            "only, because unpickling can run code"
        )
    recorded = meta.get("files")
    if recorded is None:
        warnings.warn(f"{folder} was saved before checksums were recorded; its files are not verified", stacklevel=3)
    else:
        for name, digest in recorded.items():
            path = folder / name
            if not path.is_file():
                raise BertLSTMError(f"{path} is missing from the model folder")
            if file_sha256(path) != digest:
                raise BertLSTMError(f"{path} is damaged: its SHA-256 differs from the one recorded when it was saved")
    for name in (WEIGHTS_NAME, f"{ENCODER_DIR}/config.json", f"{ENCODER_DIR}/tokenizer.json"):
        if not (folder / name).is_file():
            raise BertLSTMError(f"{folder / name} is missing from the model folder")


# --- a whole model folder ---------------------------------------------------------------------------------
@dataclass
class SavedModel:
    """A model folder, read and verified: its config sections, encoder, tokenizer, head weights and records."""

    folder: Path
    meta: dict[str, Any]  # config.json: format_version, task, model, labels, training, files, ...
    encoder: Any  # a transformers PreTrainedModel
    tokenizer: Any  # its fast tokenizer
    head_state: dict[str, Any]  # model.safetensors: every weight but the encoder's
    records: dict[str, str]  # the training record (history.csv, metrics.json) as written


def save_model_folder(
    target: str | os.PathLike,
    sections: dict[str, Any],
    head_state: dict[str, Any],
    encoder: Any,
    tokenizer: Any,
    records: dict[str, str],
    overwrite: bool = False,
) -> Path:
    """Write a model folder atomically: config.json (``sections`` plus format, versions and checksums),
    model.safetensors (``head_state``), encoder/ (the encoder's and tokenizer's own ``save_pretrained``) and
    the ``records`` files. Non-finite weights are refused: such a model could only predict NaN."""
    path = check_output(target, overwrite=overwrite)
    state = {**head_state, **{f"encoder.{k}": v for k, v in encoder.state_dict().items()}}
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise BertLSTMError(f"the model has non-finite weights ({', '.join(bad[:3])}); it was not saved")
    from safetensors.torch import save_file

    with atomic_folder(path) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in head_state.items()},
            str(tmp / WEIGHTS_NAME),
            metadata={"format": "pt"},
        )
        encoder.save_pretrained(tmp / ENCODER_DIR)
        _clean_copy(tokenizer).save_pretrained(tmp / ENCODER_DIR)
        meta = {
            "format_version": FORMAT_VERSION,
            "library_versions": {p: version(p) for p in ("bertlstm", "torch", "transformers", "safetensors")},
            **sections,
            "tokenizer_size": len(tokenizer),
            "files": digests(tmp),  # SHA-256 of every weight and tokenizer file, verified on load
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        for name, text in records.items():
            (tmp / name).write_text(text)
    return path


def _clean_copy(tokenizer: Any) -> Any:
    """The tokenizer without the truncation and padding its last call left in its backend, so that a saved
    tokenizer does not depend on what it last tokenized (and a load → save gives the same files)."""
    tokenizer = copy.deepcopy(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    return tokenizer


def load_model_folder(folder: str | os.PathLike, records: Iterable[str] = ()) -> SavedModel:
    """Read a model folder: local files only, every checksum verified, safetensors only, no code run."""
    folder = Path(folder)
    meta = read_config(folder)
    check_files(folder, meta)
    encoder, tokenizer = _load_encoder(folder / ENCODER_DIR)
    if "tokenizer_size" in meta and len(tokenizer) != meta["tokenizer_size"]:
        raise BertLSTMError(
            f"{folder / ENCODER_DIR}: the tokenizer has {len(tokenizer)} entries, but the model was saved with "
            f"{meta['tokenizer_size']}: it is not the tokenizer this model was trained with"
        )
    if len(tokenizer) > encoder.config.vocab_size:
        raise BertLSTMError(f"{folder / ENCODER_DIR}: the tokenizer is larger than the encoder's vocabulary")
    from safetensors.torch import load_file

    try:
        head_state = load_file(str(folder / WEIGHTS_NAME))
    except Exception as err:  # a torn file (SafetensorError) in a folder saved before checksums
        raise BertLSTMError(f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}: {_first_line(err)}") from None
    texts = {name: (folder / name).read_text() for name in records if (folder / name).is_file()}
    return SavedModel(folder, meta, encoder, tokenizer, head_state, texts)


def _load_encoder(folder: Path) -> tuple[Any, Any]:
    """The encoder inside a model folder: local files only, safetensors only, no code from the folder run."""
    from transformers import AutoModel, AutoTokenizer

    safe = {"local_files_only": True, "trust_remote_code": False}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **safe)
        encoder = AutoModel.from_pretrained(folder, use_safetensors=True, **safe)
    except Exception as err:  # torn or foreign files: safetensors, tokenizers and transformers raise many kinds
        raise BertLSTMError(f"could not load the encoder in {folder}: {_first_line(err)}") from None
    return encoder, tokenizer


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- the training record ----------------------------------------------------------------------------------
def history_to_csv(history: list[dict[str, Any]]) -> str:
    """One row per epoch; :func:`history_from_csv` reads it back to equal values."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def history_from_csv(text: str) -> list[dict[str, Any]]:
    return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# --- a trained estimator's folder --------------------------------------------------------------------------
def save_trained(
    directory: str | os.PathLike,
    sections: dict[str, Any],
    model: Any,
    tokenizer: Any,
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """:func:`save_model_folder` for a trained model (``head_state_dict()`` and ``encoder``), with its model
    card and training record (history.csv, metrics.json)."""
    from .reports import model_card

    records = {"README.md": model_card(repo_id, sections, metrics, history)}
    if history:
        records["history.csv"] = history_to_csv(history)
    if metrics:
        records["metrics.json"] = json.dumps(metrics, indent=2) + "\n"
    head = model.head_state_dict()
    return save_model_folder(directory, sections, head, model.encoder, tokenizer, records, overwrite)


def load_trained(model: Any, saved: SavedModel) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Put the folder's head weights into ``model`` (a clear error when they belong to another model);
    returns the training record: history and metrics."""
    try:
        model.load_trainable_state_dict(saved.head_state)
    except (ValueError, RuntimeError) as err:  # other names or shapes: another model's weights
        first = str(err).strip().splitlines()[-1].strip()  # torch's last line names the tensor
        raise BertLSTMError(f"{saved.folder / WEIGHTS_NAME} does not match config.json: {first}") from None
    history = history_from_csv(saved.records["history.csv"]) if "history.csv" in saved.records else []
    metrics = json.loads(saved.records["metrics.json"]) if "metrics.json" in saved.records else {}
    return history, metrics
