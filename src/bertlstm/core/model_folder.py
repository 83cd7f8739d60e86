"""A model folder, written and read safely for any task: config sections, head weights, the encoder with its
tokenizer, and the training record.

* Saved weight and tokenizer files are recorded by SHA-256 in ``config.json`` and verified on load
  (:func:`read_config`, :func:`check_files`): a damaged or swapped file is an error, never a wrong answer.
* :func:`save_model_folder` writes through :func:`~bertlstm.core.folders.atomic_folder`;
  :func:`load_model_folder` reads local files only, safetensors only, and never runs code shipped in the folder.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .errors import BertLSTMError, BertLSTMWarning, first_line
from .folders import CONFIG_NAME, atomic_folder, foreign_entries
from .quiet import quiet_transformers
from .word_pieces import TokenizerFiles

# 2: config.json records the SHA-256 of every weight and tokenizer file; 3: labels in their own section
FORMAT_VERSION = 3
WEIGHTS_NAME, ENCODER_DIR = "model.safetensors", "encoder"
TOKENIZER_DIR = "tokenizer"  # a model without an encoder (a distilled student) keeps its tokenizer's files here
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")  # never loaded from a model folder
RECORDS = ("history.csv", "metrics.json")  # the training record saved beside a model
_CHUNK = 1 << 24  # bytes hashed at a time


# --- checksums ------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checked_files(folder: Path) -> list[str]:
    """What config.json records the SHA-256 of: the head weights and every file in ``encoder/`` (weights,
    config, tokenizer), or in ``tokenizer/`` for a model without an encoder."""
    inside = [p for part in (ENCODER_DIR, TOKENIZER_DIR) for p in (folder / part).rglob("*")]
    names = [WEIGHTS_NAME] + sorted(p.relative_to(folder).as_posix() for p in inside)
    return [name for name in names if (folder / name).is_file()]


def tokenizer_file(folder: Path) -> Path:
    """The word-piece rules of a model folder: its encoder's, or (without an encoder) its own."""
    own = folder / TOKENIZER_DIR / "tokenizer.json"
    return own if not (folder / ENCODER_DIR).is_dir() and own.is_file() else folder / ENCODER_DIR / "tokenizer.json"


def digests(folder: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """SHA-256 of each of :func:`checked_files` (those in ``known`` were taken as the files were written)."""
    known = known or {}
    return {name: known.get(name) or file_sha256(folder / name) for name in checked_files(folder)}


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


def check_files(folder: Path, meta: dict[str, Any]) -> None:
    """Verify recorded checksums; refuse pickled weights and a missing encoder or tokenizer."""
    encoder = folder / ENCODER_DIR
    if not encoder.is_dir() and (folder / TOKENIZER_DIR).is_dir():  # a model without an encoder
        _check_tokenizer_only(folder, meta)
        return
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
        warnings.warn(
            f"{folder} was saved before checksums were recorded; its files are not verified",
            BertLSTMWarning,
            stacklevel=3,
        )
    else:
        _verify(folder, recorded)
    for name in (WEIGHTS_NAME, f"{ENCODER_DIR}/config.json", f"{ENCODER_DIR}/tokenizer.json"):
        if not (folder / name).is_file():
            raise BertLSTMError(f"{folder / name} is missing from the model folder")


def _check_tokenizer_only(folder: Path, meta: dict[str, Any]) -> None:
    """A folder whose model has no encoder: its head weights and ``tokenizer/``, every checksum recorded."""
    if not isinstance(meta.get("files"), dict):
        raise BertLSTMError(f"{folder / CONFIG_NAME} records no checksums; save the model again")
    _verify(folder, meta["files"])
    for name in (WEIGHTS_NAME, f"{TOKENIZER_DIR}/tokenizer.json"):
        if not (folder / name).is_file():
            raise BertLSTMError(f"{folder / name} is missing from the model folder")


def _verify(folder: Path, recorded: dict[str, Any]) -> None:
    """Every weight and tokenizer file listed in ``recorded`` (an empty or partial table is damage, not a reason
    to check less), present, and with the SHA-256 it had when it was saved."""
    unlisted = sorted(set(checked_files(folder)) - set(recorded))
    if unlisted:
        raise BertLSTMError(
            f"{folder / CONFIG_NAME} does not list the checksum of {', '.join(unlisted[:3])}: the folder was changed "
            "after it was saved, so its weights cannot be trusted; save the model again"
        )
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file():
            raise BertLSTMError(f"{path} is missing from the model folder")
        if file_sha256(path) != digest:
            raise BertLSTMError(f"{path} is damaged: its SHA-256 differs from the one recorded when it was saved")


# --- a whole model folder ---------------------------------------------------------------------------------
@dataclass
class SavedModel:
    """A model folder, read and verified: its config sections, encoder, tokenizer, head weights and records."""

    folder: Path
    meta: dict[str, Any]  # config.json: format_version, task, model, labels, training, files, ...
    encoder: Any  # a transformers PreTrainedModel (None: a model without an encoder)
    tokenizer: Any  # its fast tokenizer (without an encoder, a TokenizerFiles)
    head_state: dict[str, Any]  # model.safetensors: every weight but the encoder's
    records: dict[str, str]  # the training record (history.csv, metrics.json) as written


def save_model_folder(
    target: str | os.PathLike,
    sections: dict[str, Any],
    head_state: dict[str, Any],
    encoder: Any,
    tokenizer: Any,
    records: dict[str, str],
) -> Path:
    """Write a model folder atomically at ``target`` (a path the caller has checked with
    :func:`~bertlstm.core.folders.check_output`): config.json (``sections`` plus format, versions and
    checksums), model.safetensors (``head_state``), encoder/ and the ``records`` files. ``encoder``: a loaded
    encoder, saved by its and the tokenizer's own ``save_pretrained``, or an
    :class:`~bertlstm.core.encoders.EncoderSource` whose files are copied. Non-finite weights are refused: such
    a model could only predict NaN."""
    path = Path(target)
    copied = encoder is None or hasattr(encoder, "copy_to")  # no encoder, or its files as they were loaded, finite
    state = head_state if copied else {**head_state, **{f"encoder.{k}": v for k, v in encoder.state_dict().items()}}
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise BertLSTMError(f"the model has non-finite weights ({', '.join(bad[:3])}); it was not saved")
    from safetensors.torch import save_file  # torch: only to write weights (config.json alone needs none)

    with atomic_folder(path, foreign=foreign_entries) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in head_state.items()},
            str(tmp / WEIGHTS_NAME),
            metadata={"format": "pt"},
        )
        known = _write_encoder(tmp, encoder, tokenizer)
        meta = {
            "format_version": FORMAT_VERSION,
            "library_versions": {p: version(p) for p in ("bertlstm", "torch", "transformers", "safetensors")},
            **sections,
            "tokenizer_size": len(tokenizer),
            "files": digests(tmp, known),  # SHA-256 of every weight and tokenizer file, verified on load
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        for name, text in records.items():
            (tmp / name).write_text(text)
    return path


def _write_encoder(model_folder: Path, encoder: Any, tokenizer: Any) -> dict[str, str]:
    """The encoder's files into the model folder's ``encoder/``: copied from an EncoderSource (returns their
    SHA-256, by path in the model folder), or written by the encoder's and the tokenizer's ``save_pretrained``
    (returns nothing). Without an encoder, the tokenizer's files (a
    :class:`~bertlstm.core.word_pieces.TokenizerFiles`) go to ``tokenizer/``."""
    if encoder is None:
        copied = tokenizer.copy_to(model_folder / TOKENIZER_DIR)
        return {f"{TOKENIZER_DIR}/{name}": digest for name, digest in copied.items()}
    folder = model_folder / ENCODER_DIR
    if hasattr(encoder, "copy_to"):
        return {f"{ENCODER_DIR}/{name}": digest for name, digest in encoder.copy_to(folder).items()}
    with quiet_transformers():
        encoder.save_pretrained(folder)
        _clean_copy(tokenizer).save_pretrained(folder)
    return {}


def _clean_copy(tokenizer: Any) -> Any:
    """The tokenizer without the truncation and padding its last call left in its backend, so that a saved
    tokenizer does not depend on what it last tokenized (and a load → save gives the same files)."""
    tokenizer = copy.deepcopy(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    return tokenizer


def load_model_folder(
    folder: str | os.PathLike, records: Iterable[str] = (), meta: dict[str, Any] | None = None
) -> SavedModel:
    """Read a model folder: local files only, every checksum verified, safetensors only, no code run.
    ``meta``: its config.json, when already read (:func:`read_config`)."""
    folder = Path(folder)
    meta = meta if meta is not None else read_config(folder)
    check_files(folder, meta)
    if not (folder / ENCODER_DIR).is_dir():  # a model without an encoder: its weights and its tokenizer's files
        return _load_tokenizer_only(folder, meta, records)
    encoder, tokenizer = _load_encoder(folder / ENCODER_DIR)
    if "tokenizer_size" in meta and len(tokenizer) != meta["tokenizer_size"]:
        raise BertLSTMError(
            f"{folder / ENCODER_DIR}: the tokenizer has {len(tokenizer)} entries, but the model was saved with "
            f"{meta['tokenizer_size']}: it is not the tokenizer this model was trained with"
        )
    if len(tokenizer) > encoder.config.vocab_size:
        raise BertLSTMError(f"{folder / ENCODER_DIR}: the tokenizer is larger than the encoder's vocabulary")
    from safetensors.torch import load_file  # torch: only to read weights

    try:
        head_state = load_file(str(folder / WEIGHTS_NAME))
    except Exception as err:  # a torn file (SafetensorError) in a folder saved before checksums
        raise BertLSTMError(f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}: {first_line(err)}") from None
    texts = {name: (folder / name).read_text() for name in records if (folder / name).is_file()}
    return SavedModel(folder, meta, encoder, tokenizer, head_state, texts)


def _load_tokenizer_only(folder: Path, meta: dict[str, Any], records: Iterable[str]) -> SavedModel:
    from safetensors.torch import load_file  # torch: only to read weights

    special = meta.get("special_token_ids")
    tokenizer = TokenizerFiles.read(folder / TOKENIZER_DIR, special if isinstance(special, dict) else None)
    head_state = load_file(str(folder / WEIGHTS_NAME))
    texts = {name: (folder / name).read_text() for name in records if (folder / name).is_file()}
    return SavedModel(folder, meta, None, tokenizer, head_state, texts)


def _load_encoder(folder: Path) -> tuple[Any, Any]:
    """The encoder inside a model folder: local files only, safetensors only, no code from the folder run."""
    from transformers import AutoModel, AutoTokenizer  # only to load the encoder

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            encoder, info = AutoModel.from_pretrained(
                folder, use_safetensors=True, output_loading_info=True, local_files_only=True, trust_remote_code=False
            )
    except Exception as err:  # torn or foreign files: safetensors, tokenizers and transformers raise many kinds
        raise BertLSTMError(f"could not load the encoder in {folder}: {first_line(err)}") from None
    # Weights the config has no place for, or places without weights: an edited config, never a silent drop.
    wrong = {kind: info.get(f"{kind}_keys") for kind in ("missing", "unexpected", "mismatched")}
    wrong = {kind: keys for kind, keys in wrong.items() if keys}
    if wrong:
        kind, keys = next(iter(wrong.items()))
        names = ", ".join(str(k if isinstance(k, str) else k[0]) for k in list(keys)[:3])
        raise BertLSTMError(f"{folder}: its config and its weights do not fit together ({kind} weights: {names})")
    return encoder, tokenizer


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


# --- a trained model's folder -------------------------------------------------------------------------------
def save_trained(
    directory: str | os.PathLike,
    sections: dict[str, Any],
    model: Any,
    tokenizer: Any,
    records: dict[str, Any],
) -> Path:
    """:func:`save_model_folder` for a trained model (``head_state_dict()``, and its encoder's files or the
    encoder) with its training record: ``records`` holds the model card (``README.md``), the ``history`` rows
    and the ``metrics``."""
    texts = {"README.md": records["README.md"]}
    if records.get("history"):
        texts["history.csv"] = history_to_csv(records["history"])
    if records.get("metrics"):
        texts["metrics.json"] = json.dumps(records["metrics"], indent=2) + "\n"
    encoder = model.encoder_files() or model.encoder  # a model without an encoder: None
    return save_model_folder(directory, sections, model.head_state_dict(), encoder, tokenizer, texts)


def load_trained(model: Any, saved: SavedModel) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Put the folder's head weights into ``model`` (a clear error when they belong to another model);
    returns the training record: history and metrics."""
    try:
        model.load_trainable_state_dict(saved.head_state)
    except (ValueError, RuntimeError) as err:  # other names or shapes: another model's weights
        last = str(err).strip().splitlines()[-1].strip()  # torch's last line names the tensor
        raise BertLSTMError(f"{saved.folder / WEIGHTS_NAME} does not match config.json: {last}") from None
    history = history_from_csv(saved.records["history.csv"]) if "history.csv" in saved.records else []
    metrics = json.loads(saved.records["metrics.json"]) if "metrics.json" in saved.records else {}
    return history, metrics
