"""The user-facing tagger: ``fit`` on tagged sentences, ``predict`` tags, ``predict_spans`` on raw text,
``evaluate`` with entity-level scores, saved as (and loaded from) a model folder.

What it shares with every task is :class:`~bertlstm.core.estimator.Estimator`; what is its own is here:
sentences laid out in encoder windows (:mod:`.windows`), the model (:mod:`.model`) and its metrics (seqeval).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...core.backends import plain_tokenizer
from ...core.batching import sorted_batches
from ...core.config import TrainConfig
from ...core.distributed import current_shard
from ...core.errors import BertLSTMError, BertLSTMWarning
from ...core.estimator import Estimator
from ...core.export_graph import ExportGraph
from ...core.inference import as_tensors
from ...core.model_card import CardInfo
from .config import TaggerConfig
from .data import SCHEMES, Sentence, as_sentences, detect_scheme, known_sentences, to_iob2
from .export import export_graph
from .metrics import tag_metrics, tag_report
from .model import BertTaggerModel
from .predictor import TaggerPredictor
from .windows import TagDataset, WordPieces


def predict_tags(model: BertTaggerModel, dataset: TagDataset, batch_size: int, device: torch.device) -> np.ndarray:
    """The decoded tag ids of every sentence (an object array of (words,) arrays), in dataset order: what each
    epoch scores on dev, decoded by the model's own CRF."""
    out = np.empty(len(dataset), dtype=object)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for rows in sorted_batches(dataset.lengths, batch_size):
            batch = as_tensors(dataset.collate([(dataset[i][0], None) for i in rows]), device)
            tags = model.decode(model(**batch).logits, batch["word_counts"]).cpu().numpy()  # (B, W)
            for j, i in enumerate(rows):
                out[i] = tags[j, : int(batch["word_counts"][j])]
    model.train(was_training)
    return out


class BertLSTMTagger(Estimator):
    """A BERT-family encoder feeding a BiLSTM (and optionally a CRF) that tags each word of a sentence.

    Every field of :class:`TaggerConfig` and :class:`~bertlstm.core.config.TrainConfig` is a keyword argument,
    so that ``get_params``, ``set_params`` and ``clone`` work. After fitting: ``tags_`` (IOB2 tag names),
    ``model_``, ``tokenizer_``, ``history_``, ``metrics_`` and ``device_``.

    Example:
        >>> tagger = BertLSTMTagger(crf=True, epochs=3).fit(tokens, tags)   # lists of words, lists of tags
        >>> tagger.predict([["John", "lives", "in", "Paris"]])            # [["B-PER", "O", "O", "B-LOC"]]
        >>> tagger.predict_spans(["John lives in Paris."])                # [[{"text": "John", ...}, ...]]
    """

    task = "tagging"
    noun = "tagger"
    config_class = TaggerConfig
    predictor_class = TaggerPredictor
    card = CardInfo("token-classification", "BertLSTMTagger", "predict_spans", "BERT→BiLSTM tagger")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of sentences, each a list of tokens
        tags.input_tags.string = True
        tags.target_tags.required = True
        return tags

    # --- training (the hooks of Estimator.fit) ----------------------------------------------------
    predictor_: TaggerPredictor

    def fit(  # type: ignore[override]  # the dev arguments are named for the task's data
        self, X: Any, y: Any = None, dev: Any = None, dev_tags: Any = None, **options: Any
    ) -> BertLSTMTagger:
        """Train on sentences ``X`` (token lists, tags ``y``; or :class:`Sentence` objects with their tags);
        without ``dev``, ``dev_fraction`` of the sentences is held out. Tags may be IOB1, IOB2 or BIOES
        (``tag_scheme=``, detected by default); the model works in IOB2. See
        :meth:`~bertlstm.core.estimator.Estimator.fit` for ``checkpoint_dir`` and ``callbacks``."""
        return super().fit(X, y, dev, dev_tags, **options)

    def _learn(
        self,
        X: Any,
        y: Any,
        dev_X: Any,
        dev_y: Any,
        config: TaggerConfig,
        training: TrainConfig,
        tag_scheme: str = "auto",
    ) -> tuple[list[Sentence], list[Sentence]]:
        """Training and dev sentences in IOB2 (dev: given, or ``dev_fraction`` held out); the tags."""
        if tag_scheme not in ("auto", *SCHEMES):
            raise BertLSTMError(f"`tag_scheme` must be auto, {', '.join(SCHEMES)}, not {tag_scheme!r}", "tag_scheme")
        if y is None and not (len(X) and isinstance(X[0], Sentence)):  # scikit-learn's words, which its checks seek
            raise BertLSTMError("training data: requires y to be passed, but the target y is None: give tags")
        train = as_sentences(X, y, "training data")
        self.scheme_ = detect_scheme(train) if tag_scheme == "auto" else tag_scheme
        train = to_iob2(train, self.scheme_, "training data")
        names = {t for s in train for t in s.tags or []}
        self.tags_ = ["O", *sorted(names - {"O"}, key=lambda t: (t[2:], t))]
        if dev_X is None:
            order = list(range(len(train)))
            random.Random(training.seed).shuffle(order)
            cut = max(1, int(len(train) * training.dev_fraction))
            train, dev = [train[i] for i in order[cut:]], [train[i] for i in order[:cut]]
        else:
            dev = to_iob2(as_sentences(dev_X, dev_y, "dev data"), self.scheme_, "dev data")
            dev = known_sentences(dev, set(self.tags_), "dev data")
        untrained = sorted({t for s in dev for t in s.tags or []} - {t for s in train for t in s.tags or []})
        if untrained:  # a tag too rare for the dev split left none in training
            warnings.warn(
                f"dev data: tags {untrained[:5]} occur in dev but never in the training data",
                BertLSTMWarning,
                stacklevel=3,
            )
        return train, dev

    def _new_model(self, config: TaggerConfig, encoder: Any) -> BertTaggerModel:
        return BertTaggerModel(config, encoder, self.tags_)

    def _dev_outputs(self) -> Any:
        return predict_tags  # decoded tags, scored against the gold ones

    def _metric(self, training: TrainConfig) -> str:
        return "accuracy" if training.metric == "accuracy" else "micro_f1"

    def _dataset(self, sentences: list[Sentence], what: str, trainer: Any = None) -> TagDataset:
        """Sentences in encoder windows with their tag ids; for a frozen (or partly fine-tuned) encoder with
        the cache on, the windows' features (or the frozen layers' states) come from the feature cache."""
        tokenizer, config = self.tokenizer_, self.model_.config
        ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id)
        layouts = WordPieces(plain_tokenizer(tokenizer, None), config.max_length, *ids).layouts(
            sentences, config.context
        )
        index = {t: i for i, t in enumerate(self.tags_)}
        labelled = bool(sentences) and sentences[0].tags is not None
        tags = [[index[t] for t in s.tags or []] for s in sentences] if labelled else None
        windows = [w for layout in layouts for w in layout.windows]
        keys = [" ".join(map(str, w)) for w in windows]  # the cache is keyed by the windows' piece ids
        store = self._cached(keys, lambda: windows, f"windows of {what} sentences", trainer)
        return TagDataset(layouts, tags, self.pad_id, store)

    def _score(self, predicted: np.ndarray, dataset: TagDataset) -> dict[str, float]:
        return tag_metrics(self._tag_names(dataset.tags), self._tag_names(predicted))

    def _after_fit(self, dev: Any, dev_set: TagDataset, predicted: np.ndarray) -> dict[str, Any]:
        return tag_report(self._tag_names(dev_set.tags), self._tag_names(predicted))

    def _fit_notes(self) -> dict[str, Any]:
        return {"tag_scheme": self.scheme_}

    def _tag_names(self, rows: Sequence[Sequence[int]] | np.ndarray | None) -> list[list[str]]:
        return [[self.tags_[int(i)] for i in row] for row in (rows if rows is not None else [])]

    def _labels_section(self) -> dict[str, Any]:
        self._require_model()
        return {"names": list(self.tags_), "scheme": "iob2", "trained_on": getattr(self, "scheme_", "iob2")}

    def _restore_labels(self, section: dict[str, Any], where: str) -> None:
        names = section.get("names")
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise BertLSTMError(f"{where}: 'names' must list the tags")
        if len(set(names)) < len(names):  # each output of the model is one tag: a repeated name would hide another
            raise BertLSTMError(f"{where}: the tag names repeat; each must be different")
        self.tags_, self.scheme_ = names, section.get("trained_on", "iob2")

    # --- using it elsewhere: a back end's description, an export ----------------------------------
    def describe(self) -> dict[str, Any]:
        """With the CRF's scores, the moves the tag scheme forbids already at -10000: plain Viterbi over them
        gives valid entities only."""
        crf = self._require_model().crf
        scores = None
        if crf is not None:
            start, transitions, end = (t.detach().cpu().tolist() for t in crf._scores(constrained=True))
            scores = {"start": start, "transitions": transitions, "end": end}
        return {**super().describe(), "crf": scores}

    def export_graph(self) -> ExportGraph:
        """The model as one ONNX-exportable graph: windows and word positions -> emission scores."""
        return export_graph(self._require_model())

    # --- using it -----------------------------------------------------------------------------
    def predict(self, X: Any) -> list[list[str]]:
        """IOB2 tags for each sentence (a list of tokens, or a :class:`Sentence`). With ``context`` document,
        token lists given together are read as one document, in order; :class:`Sentence` objects say their
        own ``document``. Under ``torchrun`` every process tags a share."""
        self._require_model()
        return self.predictor_.predict_tags(as_sentences(X, None, "sentences"), current_shard())

    def predict_spans(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Entities in raw texts (cut into words here): ``{"text", "type", "start", "end"}`` per entity, with
        character offsets into the text."""
        self._require_model()
        return self.predictor_.predict_spans(texts)

    def evaluate(self, X: Any, y: Any = None, tag_scheme: str | None = None) -> dict[str, Any]:
        """Entity-level micro/macro and per-type P/R/F1, word accuracy and a confusion of entity types.
        Sentences with tags the model never saw in training are left out, with a warning."""
        self._require_model()
        sentences = as_sentences(X, y, "evaluation data")
        return self.predictor_.evaluate(
            sentences, None if tag_scheme in (None, "auto") else tag_scheme, current_shard()
        )
