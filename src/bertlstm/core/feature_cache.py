"""A keyed on-disk cache of frozen-encoder features, so the frozen recipes pay for the encoder once.

In ``frozen`` and ``pooled`` the encoder's output never changes, yet a naive loop runs the encoder again every
epoch. Here the first pass writes each text's features to disk (``frozen``: one row per real token,
``pooled``: one row per text) and every later epoch, and every later run on the same data, reads them back.

Partial fine-tuning (``train_top_layers``) stores instead the states of the frozen lower layers, and every epoch
runs only the trained top layers over them.

An entry is a folder named by the digest of its :class:`CacheKey` — encoder identity (name and a hash of its
weights, config and tokenizer), layer selection, max length, pooling, dtype, split point, int8 pass and a hash
of the texts — so any change is a miss, never a silent reuse. It holds ``features.bin`` (rows × hidden, raw
float16 by default), ``offsets.npy`` (where each text's rows start) and ``meta.json`` (the key, shapes and a
SHA-256 of the features), and appears only once complete (written to a temporary folder, then renamed). A
truncated or corrupt entry fails its size or checksum check and is rebuilt. Reads are positioned reads of one
text at a time, so memory stays bounded by a few batches, not by the data set. On a miss, an entry of the same
texts whose layer selection holds ours (``scalar-mix`` holds every choice) gives ours as its columns, without the
encoder (:func:`derived_store`).

Beside the entries, ``encoders/`` holds the notes on encoder folders that let a run whose features are all
cached skip loading its encoder (:mod:`bertlstm.core.encoders`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .batching import pad_batch, sorted_batches
from .config import FeaturePass
from .distributed import ALONE, Shard
from .encoder_names import LAYER_CHOICES
from .encoders import NOTES_DIR
from .errors import BertLSTMError, BertLSTMWarning
from .folders import TAG_NAME, atomic_folder, claim, default_cache_dir, is_held, tag_cache
from .model_folder import file_sha256
from .modeling import EncoderModel, layer_ids, native_bf16, native_int8, quantize_int8
from .progress import Progress

logger = logging.getLogger(__name__)
Encode = Callable[[Tensor, Tensor], Tensor]  # (input_ids, attention_mask) -> features

CACHE_FORMAT = 1
LATER = ("split", "quantized", "cut")  # CacheKey fields added after the first entries were written
_ENTRY = re.compile(r"[0-9a-f]{32}")  # CacheKey.digest()
_UNFINISHED = re.compile(r"\.(building-.+|[0-9a-f]{32}\.((tmp|old)-.+|partial))")  # an interrupted build's folder


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    encoder: str  # the encoder's name as the user gave it (for `cache info`)
    encoder_hash: str  # encoders.encoder_fingerprint()
    layers: str  # which hidden states ("last")
    max_length: int  # truncation length in word pieces
    pooling: str  # what a text's rows are: "tokens" (one per word piece), else one row ("mean": pooled)
    dtype: str  # storage dtype
    texts_hash: str  # texts_fingerprint(), order included
    n_texts: int
    split: int | None = None  # partial fine-tuning: the states of the layers below this one (not the features)
    quantized: str | None = None  # "int8": computed by an encoder with int8 linear layers; "bf16": in bf16
    cut: str | None = None  # how a text longer than max_length was cut, when not at its end ("head-tail")

    def as_dict(self) -> dict[str, Any]:
        """The key's fields; the later ones only when set, so that entries written before them still match."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in LATER or v is not None}

    def digest(self) -> str:
        blob = json.dumps({**self.as_dict(), "format": CACHE_FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


class FeatureStore:
    """One complete cache entry, read a text at a time."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.meta = meta
        self.dtype = np.dtype(meta["dtype"])
        self.hidden = int(meta["hidden"])
        self.offsets = np.load(folder / "offsets.npy")
        self._fd = os.open(folder / "features.bin", os.O_RDONLY)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    @property
    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        """Features of text ``i``: (rows, H), rows = its real tokens (frozen) or 1 (pooled)."""
        return self.rows(i, i + 1)

    def rows(self, first: int, stop: int) -> np.ndarray:
        """The rows of texts ``first`` to ``stop - 1``, one after the other: (rows, H)."""
        row_bytes = self.hidden * self.dtype.itemsize
        start, end = int(self.offsets[first]), int(self.offsets[stop])
        data = os.pread(self._fd, (end - start) * row_bytes, start * row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(end - start, self.hidden)


class FeatureCache:
    """The cache folder: finds, verifies, builds and lists entries."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def open(self, key: CacheKey) -> FeatureStore | None:
        """The entry for ``key`` if present and intact; a damaged one is removed (and so rebuilt)."""
        folder = self.root / key.digest()
        if not folder.is_dir():
            return None
        problem = self._check(folder, key)
        if problem is None:
            return FeatureStore(folder, json.loads((folder / "meta.json").read_text()))
        warnings.warn(
            f"feature cache entry {folder.name} is damaged ({problem}); rebuilding it", BertLSTMWarning, stacklevel=2
        )
        shutil.rmtree(folder, ignore_errors=True)
        return None

    @staticmethod
    def _check(folder: Path, key: CacheKey) -> str | None:
        try:
            meta = json.loads((folder / "meta.json").read_text())
            offsets = np.load(folder / "offsets.npy")
        except (OSError, ValueError) as err:
            return f"unreadable: {err}"
        if meta.get("key") != key.as_dict():
            return "key mismatch"
        if len(offsets) != key.n_texts + 1:
            return "wrong number of texts"
        features = folder / "features.bin"
        expected = int(offsets[-1]) * int(meta["hidden"]) * np.dtype(meta["dtype"]).itemsize
        if not features.is_file() or features.stat().st_size != expected:
            return "truncated"
        if file_sha256(features) != meta["sha256"]:
            return "checksum mismatch"
        return None

    def build(
        self,
        key: CacheKey,
        encode: Encode,
        feature_size: int,
        input_ids: Sequence[Sequence[int]],
        pad_id: int,
        batch_size: int,
        shard: Shard = ALONE,
        what: str = "texts",
    ) -> FeatureStore:
        """Run ``encode`` once over every text (sorted by length) and write the entry atomically; ``what``
        the texts are, for the progress bar.

        ``encode(input_ids, attention_mask)`` maps CPU tensors (B, T) to features (B, T, D) or (B, 1, D),
        on any device; ``feature_size`` is D. A process alone builds in ``.DIGEST.partial``, recording each
        batch as it is written, so that a pass killed half-way resumes where it stopped. With several processes
        (``shard``), each encodes its share of the texts into the entry's one temporary file, and the main
        process completes the entry and renames it into place once all are done; every process must call this.
        """
        lengths = [len(ids) for ids in input_ids]
        rows = lengths if key.pooling == "tokens" else [1] * len(lengths)
        offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        final, start = self.root / key.digest(), time.perf_counter()
        work = Pass(key, encode, feature_size, input_ids, pad_id, batch_size, offsets, what)
        if shard.is_main:
            tag_cache(self.root, "a bertlstm feature cache: `bertlstm cache clear` empties it")
            partial = self.root / f".{key.digest()}.partial"
            with claim(partial) if shard.world == 1 else nullcontext(False) as ours:
                if ours:  # else several processes share the pass, or another run builds it there now
                    self._fill(partial, shard, work, resume=True)
                    _complete(partial, work, start, shard)
                    with suppress(OSError):  # another run may have put the same entry in place first
                        partial.rename(final)
            if not ours:
                with atomic_folder(final, replace=False) as tmp:  # another run may finish the same entry first
                    self._fill(tmp, shard, work)
                    _complete(tmp, work, start, shard)
            if not is_held(partial):  # ours, left beside an entry another run finished first; or a killed run's
                shutil.rmtree(partial, ignore_errors=True)
        else:
            self._fill(None, shard, work)
        shard.barrier()  # the entry is in place for every process
        return FeatureStore(final, json.loads((final / "meta.json").read_text()))

    def derive(self, source: FeatureStore, key: CacheKey, columns: np.ndarray, what: str) -> FeatureStore:
        """The entry of ``key`` made of ``columns`` of ``source``'s rows, an entry of the same texts computed
        the same way from more of the encoder's layers: no encoder runs. Written atomically, a thousand texts at
        a time."""
        start, final = time.perf_counter(), self.root / key.digest()
        work = Pass(key, _no_encoder, len(columns), (), 0, 0, source.offsets, what)
        with atomic_folder(final, replace=False) as tmp:  # another run may finish the same entry first
            with open(tmp / "features.bin", "wb") as f:
                for first in range(0, len(source), 1000):
                    rows = source.rows(first, min(first + 1000, len(source)))  # (R, D of the source)
                    f.write(np.ascontiguousarray(rows[:, columns]).tobytes())
            _complete(tmp, work, start, ALONE)
        return FeatureStore(final, json.loads((final / "meta.json").read_text()))

    @staticmethod
    def _fill(folder: Path | None, shard: Shard, work: Pass, resume: bool = False) -> None:
        """The main process makes the empty file in ``folder`` (or, ``resume``, finds it with the batches
        already written); each process writes its texts' rows into it, and with ``resume`` records each
        batch once its rows are written."""
        size = int(work.offsets[-1]) * work.row_bytes
        done: set[int] = set()
        if folder is not None and resume:
            done = _resume(folder, work, size)
        elif folder is not None:  # a fresh temporary folder: the empty file every process writes into
            with open(folder / "features.bin", "wb") as f:
                f.truncate(size)
        folder = Path(shard.gather(str(folder) if folder is not None else "")[0])  # every process learns where
        lengths = [len(ids) for ids in work.input_ids]
        mine = shard.rows(sorted(range(len(lengths)), key=lambda i: -lengths[i]))
        batches = [[mine[j] for j in batch] for batch in sorted_batches([lengths[i] for i in mine], work.batch_size)]
        if done:
            logger.info(f"feature cache: resuming the pass over {work.what} at batch {len(done)} of {len(batches)}")
        step = Progress(f"feature pass over {work.what}", total=len(mine), unit="text", show=shard.is_main)
        with (
            open(folder / "features.bin", "r+b") as f,
            open(folder / "done.txt", "a") if resume else nullcontext() as record,
            torch.inference_mode(),
            step,
        ):
            for k, texts in enumerate(batches):
                if k not in done:
                    _write_batch(f.fileno(), work, texts)
                    if record is not None:  # written before it is recorded: a kill in between redoes the batch
                        record.write(f"{k}\n")
                        record.flush()
                step.update(len(texts))
        shard.barrier()  # every share is written before the main process checksums the file

    def entries(self) -> list[dict[str, Any]]:
        """Complete entries with their key, size and creation time (one whose record is torn is skipped: the
        next run that needs it rebuilds it)."""
        found = []
        for folder in self._kinds()["entry"]:
            try:
                meta = json.loads((folder / "meta.json").read_text())
                meta["key"]["n_texts"]  # noqa: B018  a record of an entry, not some other JSON
            except (OSError, ValueError, TypeError, KeyError):
                logger.warning(f"{folder / 'meta.json'} is not a cache entry's record; skipped")
                continue
            size = sum(p.stat().st_size for p in folder.iterdir())
            found.append({"entry": folder.name, "bytes": size, **meta})
        return found

    def summary(self) -> str:
        """What ``bertlstm cache info`` prints: the folder, then one line per entry."""
        entries = self.entries()
        lines = [f"{self.root}: {len(entries)} entries, {sum(e['bytes'] for e in entries) / 2**20:.1f} MiB"]
        for e in sorted(entries, key=lambda e: e["created"]):
            key = e["key"]
            layers = key["layers"] if key.get("split") is None else f"{key['layers']}, frozen layers <{key['split']}"
            layers += f" ({key['quantized']})" if key.get("quantized") else ""
            cut = f", {key['cut']}" if key.get("cut") else ""
            lines.append(
                f"  {e['created']}  {key['n_texts']:,} {e.get('texts', 'texts')}: encoder {key['encoder']}, layers "
                f"{layers}, max_length {key['max_length']}{cut}, {key['pooling']} {key['dtype']}; "
                f"{e['bytes'] / 2**20:.1f} MiB  [{e['entry']}]"
            )
        notes = [p for folder in self._kinds()["notes"] for p in folder.glob("*.json")]
        if notes:
            lines.append(f"  notes on {len(notes)} encoder folder(s), so that a cached frozen run need not load them")
        return "\n".join(lines)

    def _kinds(self) -> dict[str, list[Path]]:
        """What the cache folder holds: entries, unfinished builds, its tag, notes on encoders, and anything else."""
        kinds: dict[str, list[Path]] = {"entry": [], "unfinished": [], "tag": [], "notes": [], "other": []}
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if (
                path.is_dir()
                and not path.is_symlink()
                and _ENTRY.fullmatch(path.name)
                and (path / "meta.json").is_file()
            ):
                kinds["entry"].append(path)
            elif path.is_dir() and not path.is_symlink() and _UNFINISHED.fullmatch(path.name):
                kinds["unfinished"].append(path)
            elif path.name == TAG_NAME and path.is_file():
                kinds["tag"].append(path)
            elif path.name == NOTES_DIR and path.is_dir() and not path.is_symlink():
                kinds["notes"].append(path)
            else:
                kinds["other"].append(path)
        return kinds

    def clear(self) -> int:
        """Remove every entry, every unfinished build and the notes on encoders; returns bytes freed.

        A folder holding anything else is not a feature cache: nothing in it is deleted.
        """
        if self.root.exists() and not self.root.is_dir():
            raise BertLSTMError(f"{self.root} is a file, not a feature cache folder", "cache_dir")
        kinds = self._kinds()
        if kinds["other"]:
            names = ", ".join(p.name for p in kinds["other"][:5])
            raise BertLSTMError(
                f"{self.root} is not a bertlstm feature cache (it holds {names}); nothing was deleted", "cache_dir"
            )
        busy = [folder for folder in kinds["unfinished"] if is_held(folder)]
        if busy:
            logger.warning(f"left {len(busy)} entr{'y' if len(busy) == 1 else 'ies'} that another run is building now")
        freed = 0
        for folder in kinds["entry"] + [f for f in kinds["unfinished"] if f not in busy] + kinds["notes"]:
            freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
        return freed


@dataclass(frozen=True)
class Pass:
    """What one feature pass computes and where its rows go."""

    key: CacheKey
    encode: Encode
    feature_size: int
    input_ids: Sequence[Sequence[int]]
    pad_id: int
    batch_size: int
    offsets: np.ndarray  # (N + 1,) where each text's rows start
    what: str

    @property
    def row_bytes(self) -> int:
        return self.feature_size * np.dtype(self.key.dtype).itemsize


def _no_encoder(ids: Tensor, attention_mask: Tensor) -> Tensor:
    raise AssertionError("an entry derived from another runs no encoder")


def _write_batch(fd: int, work: Pass, texts: list[int]) -> None:
    """Encode the texts ``texts`` (their positions) as one padded batch and write each one's rows in place."""
    ids, mask = pad_batch([work.input_ids[i] for i in texts], work.pad_id)
    out = work.encode(torch.from_numpy(ids), torch.from_numpy(mask)).float().cpu().numpy()  # (B, T, D) | (B, 1, D)
    dtype = np.dtype(work.key.dtype)
    for j, i in enumerate(texts):  # positioned writes: memory stays one batch, not the data set
        features = out[j, : work.offsets[i + 1] - work.offsets[i]].astype(dtype)
        os.pwrite(fd, features.tobytes(), int(work.offsets[i]) * work.row_bytes)


def _resume(folder: Path, work: Pass, size: int) -> set[int]:
    """The batches an earlier, killed pass of the same work wrote in ``folder``; a folder of other work (or a
    first pass) starts empty."""
    plan = json.dumps({"key": work.key.as_dict(), "bytes": size, "batch_size": work.batch_size}, sort_keys=True)
    features = folder / "features.bin"
    try:
        same = (folder / "plan.json").read_text() == plan and features.stat().st_size == size
    except OSError:
        same = False
    if same:
        lines = (folder / "done.txt").read_text().split("\n") if (folder / "done.txt").is_file() else []
        return {int(line) for line in lines if line.strip().isdigit()}  # a torn last line is left out
    for stale in folder.iterdir():
        _remove_path(stale)
    (folder / "plan.json").write_text(plan)
    with open(features, "wb") as f:
        f.truncate(size)
    return set()


def _remove_path(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _complete(folder: Path, work: Pass, start: float, shard: Shard) -> None:
    """The entry's offsets and record, once every row is written."""
    np.save(folder / "offsets.npy", work.offsets)
    meta = {
        "key": work.key.as_dict(),
        "format": CACHE_FORMAT,
        "hidden": work.feature_size,
        "dtype": np.dtype(work.key.dtype).name,
        "rows": int(work.offsets[-1]),
        "sha256": file_sha256(folder / "features.bin"),
        **_made(start, shard, work.what),
    }
    for name in ("plan.json", "done.txt"):
        (folder / name).unlink(missing_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _made(start: float, shard: Shard, what: str) -> dict[str, Any]:
    """When and how an entry was built, and of what texts (training texts, dev documents' windows)."""
    return {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "build_seconds": time.perf_counter() - start,
        "processes": shard.world,
        "texts": what,
    }


def cached_store(
    cache: FeatureCache,
    key: CacheKey,
    encode: Encode,
    feature_size: int,
    input_ids: Callable[[], Sequence[Sequence[int]]],
    pad_id: int,
    batch_size: int,
    what: str = "texts",
    shard: Shard = ALONE,
    derive: Callable[[], FeatureStore | None] = lambda: None,
) -> FeatureStore:
    """The features of ``key``'s texts from the cache; on a miss, ``derive()`` (an entry made from a wider one,
    in a process alone) or ``input_ids()`` (tokenizing happens only then) encoded once, shared among the
    processes of ``shard``, and stored."""
    store = cache.open(key) if shard.is_main else None
    if shard.gather(store is not None)[0]:  # the main process decides, so that all processes build, or none
        store = store or cache.open(key)
        if store is None:
            raise RuntimeError(f"feature cache entry {key.digest()} vanished while it was being read")
        logger.info(f"feature cache: read {key.n_texts} {what} from {store.folder}")
        return store
    store = derive() if shard.world == 1 else None
    if store is not None:
        seconds = store.meta["build_seconds"]
        logger.info(f"feature cache: took {key.n_texts} {what} from a wider entry in {seconds:.1f}s -> {store.folder}")
        return store
    store = cache.build(key, encode, feature_size, input_ids(), pad_id, batch_size, shard, what)
    seconds, processes = store.meta["build_seconds"], store.meta.get("processes", 1)
    by = f" by {processes} processes" if processes > 1 else ""
    logger.info(f"feature cache: encoded {key.n_texts} {what} in {seconds:.1f}s{by} -> {store.folder}")
    return store


def machine_pass(way: FeaturePass, device: torch.device) -> tuple[FeaturePass, str]:
    """The feature pass ``way`` means on ``device``, and why: ``auto`` is the fastest the hardware computes
    natively, bf16 before int8 (its features are the closer to fp32's), else fp32; any other way is itself."""
    if way != "auto":
        return way, "as set"
    if native_bf16(device):
        return "bf16", f"auto: this {device.type} computes bf16 natively"
    if native_int8(device):
        return "int8", "auto: this CPU has int8 dot products (VNNI or AMX), not bf16"
    return "fp32", f"auto: this {device.type} computes neither bf16 nor int8 natively"


def feature_pass(model: EncoderModel, way: str | None, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """What the cache stores for a batch of ids and mask, computed ``way``: fp32 (None), int8 linear layers (a
    copy of the model; the model is untouched), or bf16 where ``device`` computes in it natively."""
    if way == "bf16" and not native_bf16(device):
        raise BertLSTMError(
            f"`feature_pass` bf16 needs hardware that computes in bf16 (a CPU with AVX512-BF16 or AMX, or a GPU); "
            f"{device.type} here has none, and emulated bf16 is slower than fp32: use fp32",
            "feature_pass",
        )
    quantized: list[EncoderModel] = []  # made at the first batch: a cache hit encodes nothing

    def encode(ids: Tensor, attention_mask: Tensor) -> Tensor:
        if way == "int8" and not quantized:
            quantized.append(quantize_int8(model, device))
        source = quantized[0] if quantized else model
        # torch warns at every quantized pass that torch.ao is moving to torchao
        with warnings.catch_warnings(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=way == "bf16"):
            if way:
                warnings.simplefilter("ignore")
            return source.cache_encode(ids.to(device), attention_mask.to(device)).float()

    return encode


def model_features(
    model: EncoderModel,
    tokenizer: Any,
    texts: Sequence[str],
    input_ids: Callable[[], Sequence[Sequence[int]]],
    training: Any,
    device: torch.device,
    what: str,
    shard: Shard = ALONE,
) -> FeatureStore:
    """The cached features of a frozen or partly fine-tuned ``model`` (``cache_encode`` gives what is stored,
    ``split`` keys it) for ``texts`` (what keys the entry; ``input_ids()`` are what is encoded on a miss), in
    ``training.cache_dir`` as ``training.cache_dtype``."""
    config, (way, _) = model.config, machine_pass(training.feature_pass, device)
    key = CacheKey(
        encoder=config.encoder,
        encoder_hash=model.encoder_hash(tokenizer),
        layers=config.layers,
        max_length=config.max_length,
        pooling=model.cache_pooling,
        dtype=training.cache_dtype,
        texts_hash=texts_fingerprint(texts),
        n_texts=len(texts),
        split=model.split,
        quantized=None if way == "fp32" else way,
        cut=model.cache_cut,
    )
    encode = feature_pass(model, key.quantized, device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cache, size, batch = FeatureCache(training.cache_dir), model.cache_feature_size, training.encode_batch_size
    derive = lambda: derived_store(cache, key, model, what)  # noqa: E731
    return cached_store(cache, key, encode, size, input_ids, pad_id, batch, what, shard, derive)


def derived_store(cache: FeatureCache, key: CacheKey, model: EncoderModel, what: str) -> FeatureStore | None:
    """``key``'s entry taken from one of the same texts, computed the same way, that holds more of the encoder's
    layers (``concat-last-4`` holds ``last``; ``scalar-mix`` holds every choice), if the cache has one: what the
    cache stores is the selected layers' states side by side, each reduced on its own (pooling averages each
    column), so ours are columns of theirs. None if there is none (or the encoder is split, or layers custom)."""
    if key.split is not None or key.layers not in LAYER_CHOICES:
        return None
    depth, hidden = model.encoder_config.num_hidden_layers, model.encoder_config.hidden_size
    ours = [i % (depth + 1) for i in layer_ids(key.layers, depth)]
    for name in LAYER_CHOICES:
        theirs = [i % (depth + 1) for i in layer_ids(name, depth)]
        if name == key.layers or not set(ours) <= set(theirs):
            continue
        source = cache.open(dataclasses.replace(key, layers=name))
        if source is not None:
            columns = np.concatenate([np.arange(hidden) + theirs.index(i) * hidden for i in ours])
            return cache.derive(source, key, columns, what)
    return None
