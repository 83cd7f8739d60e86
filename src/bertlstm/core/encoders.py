"""Finding and loading the pre-trained encoder and its tokenizer: local folders never touch the network and
no loader ever runs code shipped with a model (``trust_remote_code=False``, everywhere).

A frozen encoder whose features are all in the feature cache never runs. A run that reads them needs only what
loading the encoder once told us — its sizes, the fingerprint that keys its features, its tokenizer's special
ids and rules — and, to save the model, the encoder's files. So :func:`open_encoder` gives an
:class:`EncoderSource`: the encoder loaded at once, or, when a note written by an earlier load of the very same
files is found beside the feature cache, loaded only if something runs it. Such a run imports neither
transformers nor the encoder's code. A frozen encoder is saved into a model folder by copying its files, each
checked against the SHA-256 they had when it was loaded, rather than by serialising it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import weakref
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch

from .encoder_names import hub_error, resolve_encoder
from .errors import BertLSTMError, first_line
from .folders import atomic_file
from .hub import hub_reachable
from .model_folder import file_sha256
from .quiet import quiet_transformers

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

NOTES_DIR = "encoders"  # where, inside the feature cache folder, the notes on encoders are kept
# The files an encoder folder is made of (with model.safetensors, config.json and tokenizer.json, it is copied).
ENCODER_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
_NEEDED = ("config.json", "model.safetensors", "tokenizer.json")
_SIZES = ("hidden_size", "num_hidden_layers", "max_position_embeddings", "vocab_size", "model_type", "pad_token_id")
_SPECIAL = ("pad", "cls", "sep", "unk")
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")  # a weight of a BERT-style encoder's layer


def load_encoder(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder model and its fast tokenizer; one clear error if either cannot be had."""
    model, tokenizer, _ = _load(resolve_encoder(name), name)
    return model, tokenizer


def _load(where: str, name: str) -> tuple[Any, Any, dict[str, Any]]:
    """The encoder at ``where``, its fast tokenizer, and what loading its weights left out or found extra."""
    from transformers import AutoModel, AutoTokenizer  # only to load an encoder: a cached frozen run never does

    local = _local_only(where)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, local_files_only=local)
            model, info = AutoModel.from_pretrained(
                where, output_loading_info=True, trust_remote_code=False, local_files_only=local
            )
    except (OSError, ValueError) as err:
        if isinstance(err, BertLSTMError):
            raise
        if Path(where).exists():
            raise BertLSTMError(f"could not load encoder from {where}: {first_line(err)}") from None
        raise hub_error(name) from None
    if not getattr(tokenizer, "is_fast", False):
        raise BertLSTMError(f"encoder {where} has no fast tokenizer (tokenizer.json); bertlstm needs one")
    return model, tokenizer, info


def _local_only(where: str) -> bool:
    """A folder never goes online; a hub id does only when the Hub answers (else the local cache, at once)."""
    return Path(where).exists() or not hub_reachable()


# --- fingerprints: what decides an encoder's features ------------------------------------------------------
def encoder_fingerprint(encoder: Any, tokenizer: Any, split: int | None = None) -> str:
    """SHA-256 of the encoder's config, every weight, and the tokenizer: what decides the features. With
    ``split``, only the weights of the embeddings and the layers below it (those the cache stands in for)."""
    h = hashlib.sha256(encoder.config.to_json_string(use_diff=False).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the truncation and padding its last call left behind
        rules = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        h.update(json.dumps(rules, sort_keys=True).encode())
    else:
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        found = _LAYER.match(name)
        if split is not None and not (name.startswith("embeddings.") or (found and int(found[1]) < split)):
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_FINGERPRINTS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()


def known_fingerprint(encoder: Any, tokenizer: Any, split: int | None = None) -> str:
    """:func:`encoder_fingerprint`, computed once while the weights stay the same (a run's train and dev sets
    share it): every in-place change of a tensor bumps its version counter, and a new version is a new hash."""
    memo = _FINGERPRINTS.setdefault(encoder, {})
    key = (id(tokenizer), split, _versions(encoder))
    if key not in memo:
        memo.clear()
        memo[key] = encoder_fingerprint(encoder, tokenizer, split)
    return memo[key]


def _versions(module: Any) -> tuple[int, ...]:
    """The version counters of a module's tensors: any in-place change of a weight bumps one."""
    return tuple(t._version for t in module.state_dict().values())


# --- an encoder's files, and notes on them -----------------------------------------------------------------
@dataclass
class EncoderNote:
    """What loading an encoder from a folder told us: all a run on its cached features needs."""

    config: dict[str, Any]  # the sizes its config gave once loaded (_SIZES)
    fingerprint: str  # encoder_fingerprint(), unsplit
    special_ids: dict[str, int | None]  # the tokenizer's pad, cls, sep and unk ids
    size: int  # len(tokenizer)
    files: dict[str, str]  # the folder's files (ENCODER_FILES), by SHA-256


class EncoderSource:
    """An encoder: where its files are and how they were when it was loaded (``files``: SHA-256 by name, None
    when they cannot be copied), and the loaded ``module``, which :meth:`load` gives, loading it on demand."""

    def __init__(
        self, folder: Path | None, files: dict[str, str] | None, module: Any = None, note: EncoderNote | None = None
    ) -> None:
        self.folder, self.files, self.note = folder, files, note
        self.module: Any = None
        self._as_loaded: tuple[int, ...] = ()
        if module is not None:
            self._loaded(module)
        elif note is None:
            raise ValueError("an encoder not loaded yet needs a note on its files")

    @property
    def config(self) -> Any:
        """The encoder's config (loaded), or the sizes a note kept of it (hidden_size, num_hidden_layers, ...)."""
        if self.module is not None:
            return self.module.config
        assert self.note is not None
        return SimpleNamespace(**self.note.config)

    def load(self) -> Any:
        """The encoder, loaded from its folder now if it was not (its files checked against the note first)."""
        if self.module is None:
            assert self.folder is not None and self.files is not None
            changed = [n for n, digest in self.files.items() if file_sha256(self.folder / n) != digest]
            if changed:
                raise BertLSTMError(
                    f"{self.folder / changed[0]} changed after this model was trained on the encoder's features; "
                    "train it again"
                )
            self._loaded(_load(str(self.folder), str(self.folder))[0])
        return self.module

    def _loaded(self, module: Any) -> None:
        self.module, self._as_loaded = module, _versions(module)

    def copyable(self, module: Any) -> bool:
        """Whether ``module`` (a model's encoder, or None when never loaded) is this encoder as its files hold it:
        never changed in place since it was loaded, so that a model folder may copy the files."""
        if self.files is None or module is not self.module:
            return False
        return module is None or _versions(module) == self._as_loaded

    def copy_to(self, folder: Path) -> dict[str, str]:
        """Copy the encoder's files into ``folder``, each checked against its SHA-256 when it was loaded;
        returns those, by name."""
        assert self.folder is not None and self.files is not None
        folder.mkdir(parents=True, exist_ok=True)
        for name, digest in self.files.items():
            if _copy_sha256(self.folder / name, folder / name) != digest:
                raise BertLSTMError(
                    f"{self.folder / name} changed after the encoder was loaded from it; the model was not saved: "
                    "train again"
                )
        return dict(self.files)


def _copy_sha256(source: Path, target: Path) -> str:
    """Copy a file, hashing what was copied in the same pass."""
    h = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 24):
            h.update(chunk)
            dst.write(chunk)
    shutil.copymode(source, target)
    return h.hexdigest()


def open_encoder(name: str, notes: Path | None = None) -> tuple[EncoderSource, Any]:
    """The encoder ``name`` names and its tokenizer. With ``notes`` (a folder: a frozen encoder whose features
    may all be cached), a local encoder that a note there knows is not loaded until something runs it, and its
    tokenizer is a :class:`NotedTokenizer`; a loaded one leaves a note there for the next run."""
    where = resolve_encoder(name)
    folder = Path(where) if Path(where).is_dir() else None
    stamp = _stamp(folder) if folder is not None else None
    if notes is not None and folder is not None and stamp is not None:
        found = _read_note(notes, stamp)
        if found is not None:
            return EncoderSource(folder, found.files, note=found), NotedTokenizer(folder, found, notes / stamp)
    model, tokenizer, info = _load(where, name)
    clean = not any(info.get(f"{kind}_keys") for kind in ("missing", "unexpected", "mismatched"))
    files = None
    if folder is not None and stamp is not None and clean:  # the files load as they are: a model folder may copy them
        files = {n: file_sha256(folder / n) for n in ENCODER_FILES if (folder / n).is_file()}
    source = EncoderSource(folder, files, model)
    if notes is not None and stamp is not None and files is not None:
        _write_note(notes, stamp, source, tokenizer)
    return source, tokenizer


def _stamp(folder: Path) -> str | None:
    """What names an encoder folder's files as they are now (path, sizes, times, inodes, and the transformers
    that reads them and the bertlstm that fingerprints them): a changed file is another stamp. None: a folder
    that cannot be copied as it is."""
    if not all((folder / n).is_file() for n in _NEEDED):
        return None
    present = [n for n in ENCODER_FILES if (folder / n).is_file()]
    stats = [(n, s.st_size, s.st_mtime_ns, s.st_ino) for n in present for s in [(folder / n).stat()]]
    blob = json.dumps([str(folder.resolve()), version("transformers"), version("bertlstm"), stats])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read_note(notes: Path, stamp: str) -> EncoderNote | None:
    try:
        note = EncoderNote(**json.loads((notes / f"{stamp}.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):  # none yet, or torn: the encoder is loaded, and a note written
        return None
    return note if (notes / stamp / "tokenizer.json").is_file() else None


def _write_note(notes: Path, stamp: str, source: EncoderSource, tokenizer: Any) -> None:
    """Keep what loading the encoder told us, for the next run on its cached features (each file atomically)."""
    from .backends import plain_tokenizer  # tokenizers: only to write a note

    config = source.config
    special = {kind: getattr(tokenizer, f"{kind}_token_id") for kind in _SPECIAL}
    assert source.files is not None
    note = EncoderNote(
        {k: getattr(config, k, None) for k in _SIZES},
        known_fingerprint(source.module, tokenizer),
        special,
        len(tokenizer),
        source.files,
    )
    try:
        (notes / stamp).mkdir(parents=True, exist_ok=True)
        with atomic_file(notes / stamp / "tokenizer.json") as tmp:
            plain_tokenizer(tokenizer, None).save(str(tmp))
        with atomic_file(notes / f"{stamp}.json") as tmp:
            tmp.write_text(json.dumps(asdict(note), indent=1))
    except OSError:  # a read-only cache: the next run loads the encoder again
        pass


class NotedTokenizer:
    """An encoder's tokenizer as a note knows it: its special ids, its size, and its word-piece rules (what
    training on cached features, predicting and saving need), without transformers. Anything else loads the
    transformers tokenizer, once."""

    def __init__(self, folder: Path, note: EncoderNote, rules: Path) -> None:
        self._folder, self._note, self._rules = folder, note, rules
        self._plain: Any = None
        self._full: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not one of its own (e.g. while it is being copied)
            raise AttributeError(name)
        if name.endswith("_token_id") and name.removesuffix("_token_id") in _SPECIAL:
            return self._note.special_ids[name.removesuffix("_token_id")]
        return getattr(self.full(), name)

    def __len__(self) -> int:
        return self._note.size

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.full()(*args, **kwargs)

    @property
    def backend_tokenizer(self) -> Any:
        """The word-piece rules as the transformers tokenizer had them (a ``tokenizers.Tokenizer``)."""
        if self._plain is None:
            from tokenizers import Tokenizer  # light, and only when texts are tokenized

            self._plain = Tokenizer.from_file(str(self._rules / "tokenizer.json"))
        return self._plain

    def full(self) -> Any:
        """The transformers tokenizer itself."""
        if self._full is None:
            from transformers import AutoTokenizer  # only for what a note does not keep

            with quiet_transformers():
                self._full = AutoTokenizer.from_pretrained(self._folder, local_files_only=True, trust_remote_code=False)
        return self._full

    def __deepcopy__(self, memo: dict[int, Any]) -> NotedTokenizer:
        return NotedTokenizer(self._folder, self._note, self._rules)


def notes_folder(cache_dir: str | os.PathLike) -> Path:
    """Where the notes on encoders are kept in a feature cache folder."""
    return Path(cache_dir) / NOTES_DIR
