"""Folders and files on disk, written safely: the one place that decides what may be replaced, locks an
output, and writes folders and files atomically.

* :func:`check_output` decides whether a path may be (re)written: never the working folder or one of its
  parents, never a folder that holds an input file, and an existing folder only when it is empty or one we
  wrote (a bertlstm model folder) unless ``overwrite`` is set.
* :func:`output_lock` makes a second run on the same output fail at once instead of racing the first.
* :func:`atomic_folder` is the one writer behind model folders, checkpoints and feature-cache entries: fill a
  temporary folder beside the target, then rename it into place; a crash leaves the old target untouched and
  only a hidden temporary folder, which :func:`remove_leftovers` deletes on the next run.
* :func:`atomic_file` does the same for one file (predictions, an export's files).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import BertLSTMError

CONFIG_NAME = "config.json"
# What bertlstm writes into a model folder (the model, its record, its plots). Anything else there is the
# user's, and keeps the folder from being replaced without `overwrite`.
MODEL_ENTRIES = frozenset(
    {CONFIG_NAME, "model.safetensors", "encoder", "README.md", "history.csv", "metrics.json"}
    | {"history.png", "confusion_matrix.png", "per_label_f1.png"}
)


# --- where output may go -----------------------------------------------------------------------------
def is_model_folder(path: str | os.PathLike) -> bool:
    """A folder bertlstm wrote: a ``config.json`` with an integer format version and a ``model`` section, and
    the head weights and the encoder folder beside it (another tool's ``config.json`` is not enough)."""
    path = Path(path)
    try:
        meta = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not (isinstance(meta, dict) and type(meta.get("format_version")) is int):
        return False
    return (
        isinstance(meta.get("model"), dict) and (path / "model.safetensors").is_file() and (path / "encoder").is_dir()
    )


def foreign_entries(path: str | os.PathLike) -> list[str]:
    """What a model folder holds that bertlstm did not write there."""
    return sorted(p.name for p in Path(path).iterdir() if p.name not in MODEL_ENTRIES)


def is_replaceable(path: Path) -> bool:
    """A model folder holding only what bertlstm writes: what an output may replace without `overwrite`."""
    return is_model_folder(path) and not foreign_entries(path)


def is_seeds_folder(path: Path) -> bool:
    """A folder written by a several-seeds run: ``seeds.json``, ``seed-N`` model folders and checkpoints."""
    return all(
        p.name == "seeds.json"
        or p.name.startswith(".seed-")
        or (p.name.startswith("seed-") and (is_replaceable(p) or p.name.endswith(".checkpoint")))
        for p in path.iterdir()
    )


def check_output(
    target: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    replaceable: Callable[[Path], bool] = is_replaceable,
) -> Path:
    """The absolute path ``target`` names, if a new folder may be written there; else a clear error.

    Refused always: the working folder or one of its parents, and a folder that is or holds one of ``inputs``
    (data, settings files, checkpoints, the encoder: everything the command reads). Refused unless
    ``overwrite``: an existing file, and a non-empty folder that ``replaceable`` does not accept (by default,
    anything but a model folder holding only what bertlstm writes).
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
            raise BertLSTMError(
                f"output {target} holds {item}, which this command reads; name another folder", "output"
            )
    if path.is_dir():
        if any(path.iterdir()) and not replaceable(path) and not overwrite:
            raise BertLSTMError(
                f"output {target} {_what_is_in(path)}; name a new folder, or allow replacing it (`overwrite`)",
                "overwrite",
            )
    elif path.exists() and not overwrite:
        raise BertLSTMError(
            f"output {target} is an existing file; name a folder, or allow replacing it (`overwrite`)", "overwrite"
        )
    check_writable(path.parent)
    return path


def _what_is_in(folder: Path) -> str:
    if is_model_folder(folder):
        return f"is a bertlstm model folder that also holds files of yours ({', '.join(foreign_entries(folder)[:5])})"
    return "is a folder with other files in it, not a bertlstm model folder"


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
    killed run never blocks the next one; the lock file is removed on release, and so are the folders made
    for it that are still empty (a run refused before its first step leaves nothing behind).
    """
    lock = target.with_name(f".{target.name}.lock")
    made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(lock, target):
            yield
    finally:
        for folder in made:  # deepest first
            with suppress(OSError):
                folder.rmdir()  # only if empty


@contextmanager
def _locked(lock: Path, target: Path) -> Iterator[None]:
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


@contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``target`` to write; when the block ends it replaces ``target`` in one
    rename, so a reader never sees half a file. On an error the temporary file goes and ``target`` is untouched."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes a private file; the result follows the umask
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
