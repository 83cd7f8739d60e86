"""Folders and files on disk, written safely: the one place that decides what may be replaced, locks an
output, and writes folders and files atomically.

* :func:`check_output` decides whether a path may be (re)written: never the working folder or one of its
  parents, a folder that holds an input file, a protected folder (home, caches, environments, git work
  trees) or one holding anything bertlstm did not write; an existing bertlstm output only when it is a model
  folder or ``overwrite`` is set.
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
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import BertLSTMError

CONFIG_NAME = "config.json"
# What bertlstm writes into a model folder (the model, its record, its plots, the search that chose it). Anything
# else there is the user's, and keeps the folder from ever being replaced.
MODEL_ENTRIES = frozenset(
    {CONFIG_NAME, "model.safetensors", "encoder", "tokenizer", "README.md", "history.csv", "metrics.json"}
    | {"history.png", "confusion_matrix.png", "per_label_f1.png", "search.json"}
)


# --- where output may go -----------------------------------------------------------------------------
REPORT_MARKS = ("<!-- written by bertlstm -->", '<meta name="generator" content="bertlstm">', "<title>bertlstm report:")


def is_model_folder(path: str | os.PathLike) -> bool:
    """A folder bertlstm wrote: a ``config.json`` with an integer format version and a ``model`` section, and
    the head weights and the encoder folder (or, for a model without an encoder, the tokenizer's) beside it
    (another tool's ``config.json`` is not enough)."""
    path = Path(path)
    try:
        meta = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not (isinstance(meta, dict) and type(meta.get("format_version")) is int):
        return False
    beside = (path / "encoder").is_dir() or (path / "tokenizer").is_dir()
    return isinstance(meta.get("model"), dict) and (path / "model.safetensors").is_file() and beside


def is_report(path: Path) -> bool:
    """A file ``bertlstm report`` wrote (``--markdown``, ``--html``): its first kilobytes carry its mark."""
    if path.is_symlink() or not path.is_file():  # never opened: a pipe would wait for ever
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return any(mark in head for mark in REPORT_MARKS)


def is_checkpoint_folder(path: Path) -> bool:
    """A training run's checkpoint folder (``OUTPUT.checkpoint``): its settings and its last state, and what
    a killed write of the state left."""
    return path.is_dir() and all(
        p.name in ("run.json", "state") or p.name.startswith((".state.tmp-", ".state.old-")) for p in path.iterdir()
    )


def foreign_entries(path: str | os.PathLike) -> list[str]:
    """What a folder holds that bertlstm did not write there: in a model folder, anything but the model, its
    record, its plots and bertlstm's reports; in a several-seeds folder, anything but its summary, its
    ``seed-N`` model folders and their checkpoints; in any other folder, everything."""
    path = Path(path)
    entries = list(path.iterdir())
    if is_model_folder(path):
        return sorted(p.name for p in entries if p.name not in MODEL_ENTRIES and not is_report(p))
    if any(p.name == "seeds.json" or p.name.startswith("seed-") for p in entries):  # a killed run has no summary
        return sorted(p.name for p in entries if not _seeds_entry(p))
    return sorted(p.name for p in entries)


def _seeds_entry(p: Path) -> bool:
    if p.name == "seeds.json" or p.name.startswith(".seed-"):
        return True
    if not p.name.startswith("seed-"):
        return False
    return is_checkpoint_folder(p) if p.name.endswith(".checkpoint") else is_model_folder(p) and not foreign_entries(p)


def is_replaceable(path: Path) -> bool:
    """A model folder holding only what bertlstm writes: what an output may replace without `overwrite`."""
    return is_model_folder(path) and not foreign_entries(path)


def is_seeds_folder(path: Path) -> bool:
    """A folder written by a several-seeds run: ``seeds.json``, ``seed-N`` model folders and checkpoints."""
    return not foreign_entries(path) and not is_model_folder(path)


def cache_folders() -> dict[str, Path]:
    """The caches whose folders (and the folders that hold them) no output may be: bertlstm's feature and
    graph caches and the Hugging Face cache, where the environment puts them."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    hf_home = Path(os.environ.get("HF_HOME") or base / "huggingface")
    found = {
        "the feature cache": default_cache_dir(),
        "the graph cache": default_graph_dir(),
        "the Hugging Face cache": hf_home,
    }
    if os.environ.get("HF_HUB_CACHE"):
        found["the Hugging Face hub cache"] = Path(os.environ["HF_HUB_CACHE"])
    return {what: folder.expanduser().resolve() for what, folder in found.items()}


def default_cache_dir() -> Path:
    """``$BERTLSTM_CACHE``, else ``$XDG_CACHE_HOME/bertlstm/features``, else ``~/.cache/bertlstm/features``."""
    if os.environ.get("BERTLSTM_CACHE"):
        return Path(os.environ["BERTLSTM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bertlstm" / "features"


def default_graph_dir() -> Path:
    """``$BERTLSTM_GRAPHS``, else ``$XDG_CACHE_HOME/bertlstm/graphs``, else ``~/.cache/bertlstm/graphs``."""
    if os.environ.get("BERTLSTM_GRAPHS"):
        return Path(os.environ["BERTLSTM_GRAPHS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bertlstm" / "graphs"


def protected(path: Path, caches: Iterable[str | os.PathLike] = ()) -> str | None:
    """Why the folder ``path`` (absolute) may never be an output, or None: the home folder or one that holds
    it; a cache's folder (``caches``, and those of :func:`cache_folders`) or one that holds it; a Python
    environment's root; a git work tree's root."""
    home = Path.home().expanduser().resolve()
    if path == home or path in home.parents:
        return "is your home folder" if path == home else "holds your home folder"
    named = {**cache_folders(), **{f"the cache {c}": Path(c).expanduser().resolve() for c in caches}}
    for what, folder in named.items():
        if path == folder or path in folder.parents:
            return f"is {what}" if path == folder else f"holds {what} ({folder})"
    if (path / "pyvenv.cfg").is_file() or (path / "conda-meta").is_dir():
        return "is a Python environment"
    if (path / ".git").exists():
        return "is a git work tree"
    return None


def check_output(
    target: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    replaceable: Callable[[Path], bool] = is_replaceable,
    caches: Iterable[str | os.PathLike] = (),
) -> Path:
    """The absolute path ``target`` names, if a new folder may be written there; else a clear error.

    Nothing bertlstm did not write is ever replaced, with or without ``overwrite``. Refused always: the
    working folder or one of its parents; a folder that is or holds one of ``inputs`` (data, settings files,
    checkpoints, the encoder: everything the command reads); a :func:`protected` folder (home, caches,
    environments, git work trees; ``caches``: the run's own); an existing file; a folder holding anything
    bertlstm did not write (:func:`foreign_entries`). An existing bertlstm output is replaced when
    ``replaceable`` accepts it (by default, a model folder), or whatever its kind with ``overwrite``.
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
    reason = protected(path, caches)
    if reason is not None:
        raise BertLSTMError(f"output {target} {reason}: bertlstm never writes over it; name a new folder", "output")
    if path.is_dir():
        _check_folder(path, target, overwrite, replaceable)
    elif path.exists() or path.is_symlink():
        raise BertLSTMError(
            f"output {target} is an existing file, which bertlstm never replaces; name a folder", "output"
        )
    check_writable(path.parent)
    return path


def _check_folder(path: Path, target: str | os.PathLike, overwrite: bool, replaceable: Callable[[Path], bool]) -> None:
    if not any(path.iterdir()) or replaceable(path):
        return
    foreign = foreign_entries(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        what = "a bertlstm model folder that also holds" if is_model_folder(path) else "a folder that holds"
        raise BertLSTMError(
            f"output {target} is {what} what bertlstm did not write ({shown}); bertlstm never replaces that, "
            "even with `overwrite`: move it away, or name a new folder",
            "output",
        )
    if not overwrite:
        if not is_model_folder(path):
            raise BertLSTMError(f"output {target} is a bertlstm several-seeds folder; name a new or empty folder")
        raise BertLSTMError(
            f"output {target} is a bertlstm model folder; allow replacing it (`overwrite`)", "overwrite"
        )


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
def atomic_folder(
    target: str | os.PathLike, *, replace: bool = True, foreign: Callable[[Path], list[str]] | None = None
) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` to fill; when the block ends, it becomes ``target``.

    An existing ``target`` is replaced, or with ``replace=False`` kept (another writer of the same content
    finished first) and the new folder discarded. With ``foreign`` (what in a folder bertlstm did not write),
    a ``target`` that has come to hold such entries since it was checked is kept as it is, and the new folder
    is saved beside it under a new name, named in the error. On an error the temporary folder is removed and
    ``target`` is untouched. Files get the permissions the umask allows (``mkdtemp`` and safetensors write
    private ones), so a model saved for a team can be read by it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with hold(tmp):  # a live build, until it is in place: `cache clear` and other writers leave it alone
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
            _keep_foreign(target, tmp, foreign)
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            _remove(old)
            target.rename(old)
            tmp.rename(target)
        _remove(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _keep_foreign(target: Path, tmp: Path, foreign: Callable[[Path], list[str]] | None) -> None:
    """Refuse to replace ``target`` if it is not a folder or holds what bertlstm did not write (``foreign``);
    the new folder ``tmp`` is then kept under a visible new name beside it."""
    if foreign is None:
        return
    found = foreign(target) if target.is_dir() and not target.is_symlink() else [target.name]
    if not found:
        return
    saved = target.with_name(f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    while saved.exists():
        saved = saved.with_name(saved.name + "-1")
    tmp.rename(saved)
    raise BertLSTMError(
        f"{target} came to hold what bertlstm did not write ({', '.join(found[:5])}) while this run went on, so "
        f"it was left as it is; the new model is in {saved}"
    )


def remove_leftovers(target: Path) -> list[Path]:
    """Delete what a killed writer of ``target`` left: hidden ``.NAME.tmp-*`` and ``.NAME.old-*`` folders and
    files that no live writer holds (:func:`hold`)."""
    found = [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]
    found = [path for path in found if not is_held(path)]
    for path in found:
        _remove(path)
    return found


@contextmanager
def hold(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a folder or file) for the block: while it lasts, :func:`is_held` says so.
    The lock dies with the process, so what a killed writer left is free to remove."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


TAG_NAME, TAG_SIGNATURE = "CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55"  # the cache-folder standard


def tag_cache(root: Path, what: str) -> None:
    """Mark ``root`` as a bertlstm cache (the CACHEDIR.TAG standard: backup tools skip it); ``what`` it holds is
    said in the tag. Clearing and eviction touch only a tagged folder's entries."""
    root.mkdir(parents=True, exist_ok=True)
    tag = root / TAG_NAME
    if not tag.is_file():
        tag.write_text(f"{TAG_SIGNATURE}\n# {what}\n")


@contextmanager
def claim(path: Path) -> Iterator[bool]:
    """``path`` (a folder, made if new) held for the block (:func:`hold`) if no live process holds it: yields
    whether it is ours. Never waits: a folder another process holds, or renames meanwhile, is not ours."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            ours = os.stat(path).st_ino == os.fstat(fd).st_ino  # still the folder of that name
        except OSError:
            ours = False
        yield ours
    finally:
        os.close(fd)


def is_held(path: Path) -> bool:
    """Whether a live process holds ``path`` (:func:`hold`): a build or an export under way."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it our lock, if we got it
    return False


@contextmanager
def scratch_folder(target: Path) -> Iterator[Path]:
    """A held temporary folder beside ``target`` (``.NAME.tmp-*``), removed after the block; what killed
    writers of ``target`` left there before is removed first."""
    remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with hold(tmp):
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        with hold(tmp):  # a live write: another writer's clean-up of leftovers leaves it alone
            yield tmp
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)  # mkstemp makes a private file; the result follows the umask
            tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
