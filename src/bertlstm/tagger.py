"""The user-facing tagger: ``fit`` on tagged sentences, ``predict`` tags, ``predict_spans`` on raw text,
``evaluate`` with entity-level scores, saved as (and loaded from) a model folder.

It is the classifier's twin on the same parts: settings (:class:`~bertlstm.config.TaggerConfig`), the feature
cache, the shared :class:`~bertlstm.training.Trainer` and its callbacks, and the model folder. What is its
own: sentences laid out in encoder windows (:mod:`bertlstm.tag_data`), the model (:mod:`bertlstm.tagging`)
and its metrics (seqeval).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .callbacks import Checkpoint, EarlyStopping, KeepBest, LogEpoch
from .classifier import NotTrainedError
from .config import TaggerConfig, TrainConfig, check_together
from .data import sorted_batches
from .device import resolve_device
from .distributed import current_shard
from .encoders import check_max_length, load_encoder, resolve_training
from .errors import BertLSTMError
from .metrics import tag_metrics, tag_report
from .model_folder import load_model_folder, load_trained, save_trained
from .predict import sharded_logits
from .tag_data import SCHEMES, Sentence, TagDataset, WordPieces, detect_scheme, read_tagged, spans, split_words, to_iob2
from .tagging import BertTaggerModel

logger = logging.getLogger(__name__)
TASK = "tagging"
RECORDS = ("history.csv", "metrics.json")
SETTINGS = {f.name: f for f in (*dataclasses.fields(TaggerConfig), *dataclasses.fields(TrainConfig))}


def predict_tags(model: BertTaggerModel, dataset: TagDataset, batch_size: int, device: torch.device) -> np.ndarray:
    """The decoded tag ids of every sentence (an object array of (words,) arrays), in dataset order."""
    out = np.empty(len(dataset), dtype=object)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for rows in sorted_batches(dataset.lengths, batch_size):
            batch = {k: v.to(device) for k, v in dataset.collate([(dataset[i][0], None) for i in rows]).items()}
            tags = model.decode(model(**batch).logits, batch["word_counts"]).cpu().numpy()  # (B, W)
            for j, i in enumerate(rows):
                out[i] = tags[j, : int(batch["word_counts"][j])]
    model.train(was_training)
    return out


def as_sentences(data: Any, tags: Any = None, where: str = "data") -> list[Sentence]:
    """Sentences from :class:`Sentence` objects, or token lists with tag lists beside them (or None)."""
    if len(data) and isinstance(data[0], Sentence):
        return list(data)
    if isinstance(data, str) or not all(isinstance(s, list | tuple) for s in data):
        raise BertLSTMError(f"{where}: give sentences as lists of tokens")
    if tags is not None and len(tags) != len(data):
        raise BertLSTMError(f"{where}: {len(data)} sentences but {len(tags)} tag lists")
    out = []
    for i, tokens in enumerate(data):
        if not tokens:
            raise BertLSTMError(f"{where}: sentence {i} has no tokens")
        if tags is not None and len(tags[i]) != len(tokens):
            raise BertLSTMError(f"{where}: sentence {i} has {len(tokens)} tokens but {len(tags[i])} tags")
        out.append(Sentence([str(t) for t in tokens], None if tags is None else [str(t) for t in tags[i]]))
    return out


class BertLSTMTagger(BaseEstimator):
    """A BERT-family encoder feeding a BiLSTM (and optionally a CRF) that tags each word of a sentence.

    Every field of :class:`TaggerConfig` and :class:`TrainConfig` is a keyword argument. After fitting:
    ``tags_`` (IOB2 tag names), ``model_``, ``tokenizer_``, ``history_``, ``metrics_`` and ``device_``.

    Example:
        >>> tagger = BertLSTMTagger(crf=True, epochs=3).fit(tokens, tags)   # lists of words, lists of tags
        >>> tagger.predict([["John", "lives", "in", "Paris"]])            # [["B-PER", "O", "O", "B-LOC"]]
        >>> tagger.predict_spans(["John lives in Paris."])                # [[{"text": "John", ...}, ...]]
    """

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TypeError(f"BertLSTMTagger got unexpected keyword argument(s): {', '.join(unknown)}")
        for name, f in SETTINGS.items():
            setattr(self, name, settings.get(name, f.default))

    def _configs(self) -> tuple[TaggerConfig, TrainConfig]:
        config = TaggerConfig.from_dict({f.name: getattr(self, f.name) for f in dataclasses.fields(TaggerConfig)})
        training = TrainConfig.from_dict({f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)})
        check_together(config, training)
        return config, training

    # --- training -----------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        dev: Any = None,
        dev_tags: Any = None,
        *,
        tag_scheme: str = "auto",
        checkpoint_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Any] = (),
    ) -> BertLSTMTagger:
        """Train on sentences ``X`` (token lists, tags ``y``; or :class:`Sentence` objects with their tags);
        without ``dev``, ``dev_fraction`` of the sentences is held out. Tags may be IOB1, IOB2 or BIOES
        (``tag_scheme``, detected by default); the model works in IOB2."""
        config, training = self._configs()
        train, dev_set, self.scheme_ = self._split(X, y, dev, dev_tags, tag_scheme, training)
        names = {t for s in train for t in s.tags or []}
        self.tags_ = ["O", *sorted(names - {"O"}, key=lambda t: (t[2:], t))]
        self._build_model(config, training)
        training = self.training_
        metric = "accuracy" if training.metric == "accuracy" else "micro_f1"
        best = KeepBest(metric)
        trainer = self._trainer(training, [LogEpoch(), best, *callbacks], checkpoint_dir, metric)
        start = time.perf_counter()
        train_data = self._dataset(train, "training sentences", trainer)
        dev_data = self._dataset(dev_set, "dev sentences", trainer)
        prepare_seconds = time.perf_counter() - start
        self.history_ = trainer.fit(train_data, dev_data)
        self.device_ = trainer.accelerator.device
        self.model_.eval()  # ready to use, as after from_pretrained
        gold, predicted = self._tag_names(dev_data.tags), self._tag_names(trainer.eval_step(dev_data))
        self.metrics_ = {
            "best_epoch": best.best["epoch"],
            **{k: v for k, v in best.best.items() if k.startswith("dev_")},
            "metric": metric,
            "n_train": len(train_data),
            "n_dev": len(dev_data),
            "tag_scheme": self.scheme_,
            "prepare_seconds": prepare_seconds,
            "dev": tag_report(gold, predicted),
        }
        return self

    @staticmethod
    def _split(
        X: Any, y: Any, dev: Any, dev_tags: Any, tag_scheme: str, training: TrainConfig
    ) -> tuple[list[Sentence], list[Sentence], str]:
        """Training and dev sentences in IOB2 (dev: given, or ``dev_fraction`` held out), and the scheme the
        tags were written in."""
        if tag_scheme not in ("auto", *SCHEMES):
            raise BertLSTMError(f"`tag_scheme` must be auto, {', '.join(SCHEMES)}, not {tag_scheme!r}", "tag_scheme")
        train = as_sentences(X, y, "training data")
        scheme = detect_scheme(train) if tag_scheme == "auto" else tag_scheme
        train = to_iob2(train, scheme, "training data")
        if dev is not None:
            return train, to_iob2(as_sentences(dev, dev_tags, "dev data"), scheme, "dev data"), scheme
        order = list(range(len(train)))
        random.Random(training.seed).shuffle(order)
        cut = max(1, int(len(train) * training.dev_fraction))
        return [train[i] for i in order[cut:]], [train[i] for i in order[:cut]], scheme

    def _build_model(self, config: TaggerConfig, training: TrainConfig) -> None:
        from accelerate.utils import set_seed

        set_seed(training.seed)
        encoder, self.tokenizer_ = load_encoder(config.encoder)
        check_max_length(config.encoder, config.max_length, encoder.config)
        self.model_ = BertTaggerModel(config, encoder, self.tags_)
        self.training_ = resolve_training(training, encoder.config, config.mode)

    def _trainer(self, training: TrainConfig, callbacks: list[Any], checkpoint_dir: Any, metric: str) -> Any:
        from .training import Trainer

        if checkpoint_dir is not None:
            callbacks.append(Checkpoint(checkpoint_dir))
        if training.patience:
            callbacks.append(EarlyStopping(metric, training.patience))
        tagger = self

        class TagTrainer(Trainer):
            def eval_step(self, dataset: Any) -> np.ndarray:  # decoded tags, not logits
                batch, device = self.config.encode_batch_size, self.accelerator.device
                return sharded_logits(self.base_model, dataset, batch, device, self.shard, predict=predict_tags)

        def score(predicted: np.ndarray, dataset: Any) -> dict[str, float]:
            return tag_metrics(tagger._tag_names(dataset.tags), tagger._tag_names(predicted))

        return TagTrainer(self.model_, training, score=score, callbacks=callbacks)

    # --- datasets -----------------------------------------------------------------------------
    def _dataset(self, sentences: list[Sentence], what: str, trainer: Any = None) -> TagDataset:
        """Sentences in encoder windows with their tag ids; for a frozen (or partly fine-tuned) encoder with
        the cache on, the windows' features (or the frozen layers' states) come from the feature cache."""
        model, tokenizer = self._require_model(), self.tokenizer_
        layouts = WordPieces(tokenizer, model.config.max_length).layouts(sentences, model.config.context)
        index = {t: i for i, t in enumerate(self.tags_)}
        tags = None
        if sentences and sentences[0].tags is not None:
            unknown = sorted({t for s in sentences for t in s.tags or [] if t not in index})
            if unknown:
                raise BertLSTMError(f"{what}: tags never seen in training: {', '.join(unknown[:5])}")
            tags = [[index[t] for t in s.tags or []] for s in sentences]
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        dataset = TagDataset(layouts, tags, pad_id)
        if trainer is None or not (model.cacheable and self.training_.cache):
            return dataset
        from .feature_cache import model_features

        device = trainer.accelerator.device
        model.to(device)
        windows = dataset.windows
        keys = [" ".join(map(str, w)) for w in windows]  # the cache is keyed by the windows' piece ids
        store = model_features(
            model, tokenizer, keys, lambda: windows, None, self.training_, device, f"windows of {what}", trainer.shard
        )
        return dataset.with_store(store.store)

    def _tag_names(self, rows: Sequence[Sequence[int]] | np.ndarray | None) -> list[list[str]]:
        return [[self.tags_[int(i)] for i in row] for row in (rows if rows is not None else [])]

    def _require_model(self) -> BertTaggerModel:
        if getattr(self, "model_", None) is None:
            raise NotTrainedError("this tagger is not trained yet: call fit() or from_pretrained()")
        return self.model_

    # --- using it -----------------------------------------------------------------------------
    def _predict(self, sentences: list[Sentence], batch_size: int | None = None) -> list[list[str]]:
        model = self._require_model()
        if not sentences:
            return []
        dataset = self._dataset(sentences, "sentences")
        batch = batch_size or (32 if self.device_.type == "cpu" else self.training_.encode_batch_size)
        return self._tag_names(sharded_logits(model, dataset, batch, self.device_, current_shard(), predict_tags))

    def predict(self, X: Any) -> list[list[str]]:
        """IOB2 tags for each sentence (a list of tokens, or a :class:`Sentence`). With ``context`` document,
        token lists given together are read as one document, in order; :class:`Sentence` objects say their
        own ``document``."""
        return self._predict(as_sentences(X, None, "sentences"))

    def predict_spans(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Entities in raw texts (cut into words here): ``{"text", "type", "start", "end"}`` per entity, with
        character offsets into the text."""
        return spans_of(texts, self._predict)

    def evaluate(self, X: Any, y: Any = None, tag_scheme: str | None = None) -> dict[str, Any]:
        """Entity-level micro/macro and per-type P/R/F1, word accuracy and a confusion of entity types."""
        sentences = as_sentences(X, y, "evaluation data")
        scheme = detect_scheme(sentences) if tag_scheme in (None, "auto") else tag_scheme
        gold = to_iob2(sentences, scheme, "evaluation data")
        known = set(self.tags_)
        unseen = sorted({t for s in gold for t in s.tags or [] if t not in known})
        if unseen:
            raise BertLSTMError(f"evaluation data: tags the model never saw in training: {', '.join(unseen[:5])}")
        predicted = self._predict([Sentence(s.tokens, None, s.document, s.line) for s in gold])
        return tag_report([s.tags or [] for s in gold], predicted)

    # --- folders ------------------------------------------------------------------------------
    def save_pretrained(
        self, directory: str | os.PathLike, overwrite: bool = False, repo_id: str | None = None
    ) -> Path:
        """Write a self-contained model folder atomically (see the classifier's ``save_pretrained``)."""
        model = self._require_model()
        sections = {
            "task": TASK,
            "model": model.config.to_dict(),
            "labels": {"names": self.tags_, "scheme": "iob2", "trained_on": getattr(self, "scheme_", "iob2")},
            "training": self.training_.to_dict(),
        }
        history, metrics = getattr(self, "history_", []), getattr(self, "metrics_", {})
        return save_trained(directory, sections, model, self.tokenizer_, history, metrics, repo_id, overwrite)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "auto") -> BertLSTMTagger:
        """Load a folder written by :meth:`save_pretrained`: checksums verified, safetensors only."""
        from .hub import local_folder

        saved = load_model_folder(local_folder(name_or_path), RECORDS)
        where = f"{saved.folder / 'config.json'}: "
        if saved.meta.get("task") != TASK:
            raise BertLSTMError(f"{where}a {saved.meta.get('task', 'classification')} model, not a tagger")
        config = TaggerConfig.from_dict(saved.meta["model"], where + "model: ")
        training = TrainConfig.from_dict(saved.meta.get("training", {}), where + "training: ")
        tagger = cls(**config.as_kwargs(), **training.as_kwargs())
        names = saved.meta["labels"].get("names")
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise BertLSTMError(f"{where}labels: 'names' must list the tags")
        tagger.tags_, tagger.training_ = names, training
        tagger.device_, tagger.tokenizer_ = resolve_device(device), saved.tokenizer
        model = BertTaggerModel(config, saved.encoder, names)
        tagger.history_, tagger.metrics_ = load_trained(model, saved)
        tagger.model_ = model.to(tagger.device_).eval()
        return tagger


TOKEN_FILES = (".conll", ".txt", ".iob", ".bio")  # column files, one token per line (a .tsv is a table of texts)


def tag_file(
    model: str | os.PathLike,
    texts: Sequence[str] | None,
    input: str | os.PathLike | None,
    output: str | os.PathLike | None,
    stream: Any,
    text_column: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    backend: str = "auto",
    quantize: str | None = None,
) -> int:
    """Tag sentences with the tagger ``model`` (a folder, or an exported .onnx), as ``bertlstm predict`` does.

    A CoNLL-style ``input`` (tokens in the first column) or JSON Lines with ``tokens`` gets a tag per token,
    written as CoNLL (``token<TAB>tag``) or JSON Lines (``{"tokens", "tags"}``, for a .jsonl ``output``).
    Raw ``texts``, or a table with a text column, get entity spans with character offsets, one JSON object
    per text: ``{"text", "entities": [{"text", "type", "start", "end"}, ...]}``. Returns sentences written.
    """
    from .data import load_texts
    from .predict import load_predictor

    target = _tag_output(output, input)
    tokens_in = input is not None and (Path(input).suffix.lower() in TOKEN_FILES or _has_tokens(Path(input)))
    sentences = read_tagged(input, labelled=False) if tokens_in and input is not None else None
    if sentences is None:
        texts = load_texts(str(input), text_column) if input is not None else list(texts or [])
    tagger: Any = load_predictor(str(model), backend, quantize, device, batch_size)
    if sentences is not None:
        as_json = target is not None and target.suffix.lower() in (".jsonl", ".json")
        lines = _tagged_lines(sentences, tagger.predict_tags(sentences), as_json)
    else:
        texts = texts or []
        found = tagger.predict_spans(texts)
        lines = [json.dumps({"text": t, "entities": e}, ensure_ascii=False) for t, e in zip(texts, found, strict=True)]
    if not current_shard().is_main:  # under torchrun every process tags (a share of) the sentences; one writes
        return len(lines)
    if target is None:
        stream.write("\n".join(lines) + "\n")
        return len(lines)
    tmp = target.with_name(f".{target.name}.tmp")  # written whole, then renamed: never half a file
    try:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    count = len(sentences if sentences is not None else texts or [])
    logger.info(f"wrote {count} tagged sentences to {target}")
    return count


def _tag_output(output: str | os.PathLike | None, input: str | os.PathLike | None) -> Path | None:
    """Where tags may be written: a .conll, .txt or .jsonl file that is not the input."""
    if output is None:
        return None
    target = Path(output).expanduser()
    if target.suffix.lower() not in (*TOKEN_FILES, ".jsonl", ".json"):
        raise BertLSTMError(f"tagger output {output}: use a .conll, .txt or .jsonl file name", "output")
    if input is not None and target.resolve() == Path(input).expanduser().resolve():
        raise BertLSTMError(f"tagger output {output} is the input file; name another file", "output")
    if not target.parent.is_dir():
        raise BertLSTMError(f"tagger output {output}: folder {target.parent} does not exist", "output")
    return target


def _has_tokens(path: Path) -> bool:
    """A JSON Lines file whose first row has a ``tokens`` list."""
    if path.suffix.lower() not in (".jsonl", ".json") or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        return isinstance(json.loads(first).get("tokens"), list)
    except (ValueError, AttributeError):
        return False


def _tagged_lines(sentences: list[Sentence], tags: list[list[str]], as_json: bool) -> list[str]:
    if as_json:
        return [
            json.dumps({"tokens": s.tokens, "tags": t}, ensure_ascii=False)
            for s, t in zip(sentences, tags, strict=True)
        ]
    lines: list[str] = []
    document = None
    for sentence, row in zip(sentences, tags, strict=True):
        if sentence.document != document and sentence.document:
            lines += ["-DOCSTART-\tO", ""]
        document = sentence.document
        lines += [f"{token}\t{tag}" for token, tag in zip(sentence.tokens, row, strict=True)] + [""]
    return lines[:-1]


# --- prediction back ends (serving) ----------------------------------------------------------------------
def viterbi(emissions: np.ndarray, counts: np.ndarray, start: np.ndarray, transitions: np.ndarray, end: np.ndarray):
    """The best tag path per sentence over exported emissions, all sentences at once (what the CRF's
    :meth:`~bertlstm.crf.CRF.decode` does, in NumPy): (B, W, C), (B,) -> (B, W) tag ids, 0 past the end."""
    batch, words, tags = emissions.shape
    score = start + emissions[:, 0]  # (B, C)
    pointers = np.zeros((batch, words, tags), dtype=np.int64)
    pointers[:, 0] = np.arange(tags)
    for t in range(1, words):
        candidates = score[:, :, None] + transitions  # (B, C_from, C_to)
        best = candidates.argmax(1)  # (B, C_to)
        real = (t < counts)[:, None]  # (B, 1)
        score = np.where(real, np.take_along_axis(candidates, best[:, None], 1)[:, 0] + emissions[:, t], score)
        pointers[:, t] = np.where(real, best, np.arange(tags))  # padding points every tag to itself
    path = np.zeros((batch, words), dtype=np.int64)
    path[:, -1] = (score + end).argmax(1)
    for t in range(words - 1, 0, -1):
        path[:, t - 1] = np.take_along_axis(pointers[:, t], path[:, t : t + 1], 1)[:, 0]
    return np.where(np.arange(words) < counts[:, None], path, 0)


class TorchTagger:
    """A tagger model folder through PyTorch, for the server: entities in raw texts."""

    task = "tagging"

    def __init__(
        self, model: str | os.PathLike, device: str = "auto", quantize: str | None = None, batch_size: int | None = None
    ) -> None:
        from .model_folder import read_config
        from .predict import quantize_int8

        self.tagger = BertLSTMTagger.from_pretrained(model, device=device)
        self._meta, self.quantize = read_config(model), quantize
        self.batch_size = batch_size
        if quantize == "int8":
            self.tagger.model_ = quantize_int8(self.tagger.model_, self.tagger.device_)
        elif quantize is not None:
            raise BertLSTMError(f"`quantize` must be int8 or nothing, not {quantize!r}", "quantize")

    def predict_tags(self, sentences: list[Sentence]) -> list[list[str]]:
        import warnings

        with warnings.catch_warnings():  # torch warns at every quantized pass that torch.ao is moving to torchao
            warnings.simplefilter("ignore")
            return self.tagger._predict(sentences, self.batch_size)

    def predict_spans(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        return spans_of(texts, self.predict_tags)

    def metadata(self) -> dict[str, Any]:
        config = self.tagger.model_.config
        return {
            "backend": "torch",
            "task": self.task,
            "quantized": self.quantize,
            "format_version": self._meta["format_version"],
            "mode": config.mode,
            "encoder": config.encoder,
            "max_length": config.max_length,
            "crf": config.crf,
            "labels": {"names": self.tagger.tags_, "scheme": "iob2"},
        }


class _Pieces:
    """What :class:`~bertlstm.tag_data.WordPieces` needs of a tokenizer, from a ``tokenizers.Tokenizer``."""

    def __init__(self, tokenizer: Any, ids: dict[str, int]) -> None:
        self.tokenizer = tokenizer
        self.cls_token_id, self.sep_token_id, self.unk_token_id = ids["cls"], ids["sep"], ids["unk"]

    def __call__(self, words: list[str], add_special_tokens: bool = False) -> dict[str, list[list[int]]]:
        encoded = self.tokenizer.encode_batch(words, add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}


class OnnxTagger:
    """An exported tagger (``bertlstm export``) through onnxruntime: the graph gives emissions, and
    :func:`viterbi` over the CRF scores in its metadata decodes them (each word's best tag without a CRF)."""

    task = "tagging"

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any], batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(path)
        self.meta, self.batch_size = meta, batch_size
        self.tags = list(meta["labels"]["names"])
        tokenizer = _Pieces(Tokenizer.from_file(str(path.with_name(meta["tokenizer"]))), meta["special_token_ids"])
        self.pieces = WordPieces(tokenizer, int(meta["max_length"]))
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        crf = meta.get("crf")
        self.crf = (
            None
            if crf is None
            else tuple(np.asarray(crf[k], dtype=np.float32) for k in ("start", "transitions", "end"))
        )

    def predict_tags(self, sentences: list[Sentence]) -> list[list[str]]:
        from .export import TAGGER_INPUTS

        layouts = self.pieces.layouts(sentences, self.meta.get("context", "sentence"))
        dataset = TagDataset(layouts, None, int(self.meta["pad_token_id"]))
        out: list[list[str]] = [[] for _ in sentences]
        for rows in sorted_batches(dataset.lengths, self.batch_size):
            batch = dataset.collate([dataset[i] for i in rows])
            feeds = {name: batch[name].numpy().astype(np.int64) for name in TAGGER_INPUTS}
            emissions = self.session.run(["emissions"], feeds)[0]  # (B, W, C)
            counts = feeds["word_counts"]
            best = emissions.argmax(-1) if self.crf is None else viterbi(emissions, counts, *self.crf)
            for j, i in enumerate(rows):
                out[i] = [self.tags[t] for t in best[j, : counts[j]]]
        return out

    def predict_spans(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        return spans_of(texts, self.predict_tags)

    def metadata(self) -> dict[str, Any]:
        keys = ("mode", "encoder", "max_length", "format_version", "quantized", "labels")
        return {"backend": "onnx", "task": self.task, "crf": self.crf is not None, **{k: self.meta[k] for k in keys}}


def spans_of(texts: Sequence[str], predict: Any) -> list[list[dict[str, Any]]]:
    """Entities in raw texts: each text cut into words, ``predict(sentences)`` tags them, and every entity
    becomes ``{"text", "type", "start", "end"}`` with character offsets into its text."""
    # Each text is its own document: with document context, no text reads another's words.
    sentences = [dataclasses.replace(split_words(text), document=i) for i, text in enumerate(texts)]
    found: list[list[dict[str, Any]]] = [[] for _ in texts]
    keep = [i for i, s in enumerate(sentences) if s.tokens]  # a text with no words has no entities
    for i, tags in zip(keep, predict([sentences[i] for i in keep]), strict=True):
        offsets = sentences[i].offsets or []
        for first, last, kind in spans(tags):
            start, end = offsets[first][0], offsets[last - 1][1]
            found[i].append({"text": texts[i][start:end], "type": kind, "start": start, "end": end})
    return found
