"""The student as a scikit-learn classifier: ``LSTMStudent(teacher=...).fit(texts, labels)`` distils a trained
classifier into a model that needs no encoder. It is the classifier's estimator (labels, metrics, folders,
prediction) with its own data — the transfer set and the teacher's logits over it — and its own model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from ...core.backends import plain_tokenizer
from ...core.config import TrainConfig
from ...core.data import as_texts
from ...core.device import resolve_device
from ...core.errors import BertLSTMError
from ...core.estimator import Estimator
from ...core.export_graph import ExportGraph
from ...core.feature_cache import FeatureCache
from ...core.model_card import CardInfo
from ...core.model_folder import SavedModel, load_trained
from ..classify.data import TextCut, TokenDataset, split_dev, texts_and_labels
from ..classify.estimator import BertLSTMClassifier
from ..classify.labels import Labels
from .augment import Rules, transfer_set
from .config import StudentConfig
from .export import export_graph
from .model import StudentModel
from .predictor import StudentPredictor
from .teacher import find_teacher, open_teacher, teacher_logits

logger = logging.getLogger(__name__)


class TransferDataset(TokenDataset):
    """Token ids with the student's float targets: the teacher's logits, the gold labels, whether known."""

    def collate(self, items: list[tuple[list[int], Any]]) -> dict[str, np.ndarray]:
        batch = super().collate([(ids, None) for ids, _ in items])
        batch["labels"] = np.asarray([target for _, target in items], dtype=np.float32)  # (B, 2C + 1)
        return batch


class LSTMStudent(BertLSTMClassifier):
    """A trained classifier (the ``teacher``: a model folder, a Hub id or an export) distilled into word-piece
    embeddings, an LSTM and a linear head, which answer without any encoder.

    Every field of :class:`StudentConfig` and :class:`~bertlstm.core.config.TrainConfig` is a keyword argument.
    ``fit`` takes the training texts and their labels (the teacher's label names), an optional dev set and
    ``unlabeled`` texts; it scores the transfer set once through the teacher (kept in the feature cache), then
    trains the student on it.

    Example:
        >>> student = LSTMStudent(teacher="my-model", augment=10, epochs=3).fit(texts, labels)
        >>> student.predict(["A gripping film"]), student.metrics_["teacher"]["dev_agreement"]
    """

    task = "student"
    noun = "student"
    config_class = StudentConfig
    predictor_class = StudentPredictor
    card = CardInfo("text-classification", "LSTMStudent", "predict", "LSTM student of a BERT→LSTM classifier")

    def fit(  # type: ignore[override]  # the student's own keywords
        self,
        X: Any,
        y: Any = None,
        dev_texts: Any = None,
        dev_labels: Any = None,
        *,
        unlabeled: Any = None,
        teacher_model: Any = None,
        **options: Any,
    ) -> LSTMStudent:
        """Distil the teacher on texts ``X`` with labels ``y`` (or a table holding both), checking on the dev set
        (without one, ``dev_fraction`` of the data is held out); ``unlabeled`` texts join the transfer set.
        ``teacher_model``: the teacher already opened (a predictor, such as ``bertlstm.open_model`` gives),
        else it is opened here on its fastest exact engine."""
        options.update(unlabeled=unlabeled, teacher_model=teacher_model)
        return Estimator.fit(self, X, y, dev_texts, dev_labels, **options)

    # --- the transfer set and the teacher's logits -------------------------------------------------------
    def _learn(  # type: ignore[override]
        self,
        X: Any,
        y: Any,
        dev_X: Any,
        dev_y: Any,
        config: StudentConfig,
        training: TrainConfig,
        text_column: str | None = None,
        label_column: str | None = None,
        unlabeled: Any = None,
        teacher_model: Any = None,
    ) -> tuple[tuple[list[str], np.ndarray], tuple[list[str], list[Any]]]:
        """The teacher's labels; the gold training and dev texts; the transfer set with its targets (the
        teacher's logits, and the gold labels where known)."""
        assert config.teacher is not None  # check_training
        self.teacher_ = find_teacher(config.teacher)
        self.labels_ = Labels.from_dict(self.teacher_.labels, f"the teacher {config.teacher}'s labels")
        multi = self.labels_.multi_label
        texts, raw = texts_and_labels(X, y, text_column, label_column, "training data")
        labels = Labels.clean(raw, multi, "training labels")
        if dev_X is None:
            texts, dev_texts, labels, dev = split_dev(texts, labels, training.dev_fraction, training.seed)
        else:
            dev_texts, dev_raw = texts_and_labels(dev_X, dev_y, text_column, label_column, "dev data")
            dev_texts, dev = list(dev_texts), Labels.clean(dev_raw, multi, "dev labels")
        self.text_column_ = text_column
        extra = [] if unlabeled is None else as_text_list(unlabeled)
        rules = Rules(self.teacher_.tokenizer().token("mask"), config.mask_prob, config.replace_prob, config.ngram_prob)
        parts = transfer_set(texts, config.augment, rules, training.seed, extra)
        transfer, originals = [text for part in parts for text in part], len(parts[0])
        gold = self._gold(texts, labels, parts[0])
        logger.info(
            f"transfer set: {originals} training texts, {sum(map(len, parts[1:-1]))} augmented copies "
            f"({config.augment} a text), {len(parts[-1])} texts without labels"
        )
        dev_targets = self._targets(dev_texts, dev, "dev data")  # the rows whose labels the teacher knows
        logits, self.teacher_dev_ = self._teacher_pass(parts, dev_targets[0], config, training, teacher_model)
        known = np.zeros((len(transfer), 1), dtype=np.float32)
        known[:originals] = gold[1]
        golden = np.zeros((len(transfer), len(self.labels_)), dtype=np.float32)
        golden[:originals] = gold[0]
        return (transfer, np.concatenate([logits, golden, known], axis=1)), dev_targets

    def _gold(self, texts: list[str], labels: list[Any], unique: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per unique training text (its first row), its gold labels as a 0/1 row (C,) and whether the teacher
        knows them (a label it never learnt is left to the teacher)."""
        index = {n: i for i, n in enumerate(self.labels_.names)}
        first: dict[str, Any] = {}
        for text, label in zip(texts, labels, strict=True):
            first.setdefault(text, label)
        rows = np.zeros((len(unique), len(self.labels_)), dtype=np.float32)
        known = np.zeros((len(unique), 1), dtype=np.float32)
        for row, text in enumerate(unique):
            names = first[text] if isinstance(first[text], list) else [first[text]]  # multi-label: maybe none
            if all(n in index for n in names):
                rows[row, [index[n] for n in names]] = 1.0
                known[row] = 1.0
        if not known.any():
            raise BertLSTMError(f"no training label is one of the teacher's ({', '.join(self.labels_.names[:10])})")
        return rows, known

    def _teacher_pass(
        self, parts: list[list[str]], dev_texts: list[str], config: StudentConfig, training: TrainConfig, opened: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's logits over each part of the transfer set and over the dev texts: from the feature
        cache, or computed once (then kept there). Gold labels alone (``gold_weight`` 1) need none over the
        transfer set."""
        start = time.perf_counter()
        predictor = opened if opened is not None else open_teacher(self.teacher_, training.device)
        cache = FeatureCache(training.cache_dir) if training.cache else None
        batch, classes = training.encode_batch_size, len(self.labels_)
        names = ["training texts", *(f"augmented copies {j}" for j in range(1, len(parts) - 1)), "unlabeled texts"]
        logits = [
            np.zeros((len(part), classes), dtype=np.float32)  # the loss is the gold labels' alone
            if config.gold_weight == 1.0 or not part
            else teacher_logits(self.teacher_, predictor, part, cache, batch, f"{name} (teacher)")
            for part, name in zip(parts, names, strict=True)
        ]
        dev_logits = teacher_logits(self.teacher_, predictor, dev_texts, cache, batch, "dev texts (teacher)")
        self.teacher_seconds_ = time.perf_counter() - start
        return np.concatenate(logits), dev_logits

    # --- the model -------------------------------------------------------------------------------------------
    def _build_model(self, config: StudentConfig, training: TrainConfig) -> None:
        from accelerate.utils import set_seed  # only to train

        set_seed(training.seed)
        self.tokenizer_ = self.teacher_.tokenizer()
        table = self.teacher_.embedding_table()[: len(self.tokenizer_)]
        self.model_ = StudentModel(config, table, len(self.labels_), self.labels_.multi_label)
        self.training_ = training
        self.metrics_ = {}

    def _loss_weight(self, train: Any) -> None:
        return None

    def _dataset(self, examples: tuple[list[str], Any], what: str, trainer: Any = None) -> TokenDataset:
        """Word-piece ids, cut at ``max_length``; the transfer set with its float targets."""
        texts, targets = examples
        cut = TextCut(self.model_.config.max_length)
        ids = cut(plain_tokenizer(self.tokenizer_, cut.truncation), texts)
        if what == "training":
            return TransferDataset(ids, list(targets), self.pad_id)
        return TokenDataset(ids, targets, self.pad_id)

    def _after_fit(self, dev: tuple[list[str], list[Any]], dev_set: Any, logits: np.ndarray) -> dict[str, Any]:
        """The classifier's report on dev, the teacher's on the same texts, and how often the two agree."""
        report = super()._after_fit(dev, dev_set, logits)
        teacher = self.teacher_dev_
        if self.labels_.multi_label:  # each decided at its own thresholds (the teacher's tuned on its dev)
            taught = Labels.from_dict(self.teacher_.labels).chosen(sigmoid(teacher))
            agree = float(np.mean(self.labels_.chosen(sigmoid(logits)) == taught))
        else:
            agree = float(np.mean(logits.argmax(1) == teacher.argmax(1)))
        scores = self._score(teacher, dev_set)
        self.teacher_metrics_ = {
            **self.teacher_.describe(),
            **{f"dev_{k}": v for k, v in scores.items()},
            "dev_agreement": agree,
            "pass_seconds": self.teacher_seconds_,
        }
        return report

    def _fit_notes(self) -> dict[str, Any]:
        return {"teacher": getattr(self, "teacher_metrics_", {})}

    # --- using it -----------------------------------------------------------------------------------------------
    def _made_from(self) -> list[Path]:
        return find_teacher(self.teacher).files if self.teacher is not None else []

    def export_graph(self) -> ExportGraph:
        return export_graph(self._require_model())

    @classmethod
    def from_saved(cls, saved: SavedModel, device: str = "auto") -> LSTMStudent:
        """The student of a model folder already read and verified."""
        where = f"{saved.folder / 'config.json'}: "
        if saved.meta.get("task") != cls.task:
            raise BertLSTMError(f"{where}a {saved.meta.get('task')} model, not a student ({cls.__name__})")
        config = StudentConfig.from_dict(saved.meta["model"], where + "model: ")
        training = TrainConfig.from_dict(saved.meta.get("training", {}), where + "training: ")
        estimator = cls(**config.as_kwargs(), **training.as_kwargs())
        estimator._restore_labels(saved.meta["labels"], where + "labels")
        estimator.training_, estimator.tokenizer_ = training, saved.tokenizer
        estimator.device_ = resolve_device(device)
        table = saved.head_state.get("embeddings.weight")
        if table is None:
            raise BertLSTMError(f"{saved.folder / 'model.safetensors'} holds no word-piece embeddings")
        model = StudentModel(config, table.float(), len(estimator.labels_), estimator.labels_.multi_label)
        estimator.history_, estimator.metrics_ = load_trained(model, saved)
        estimator.model_ = model.to(estimator.device_).eval()
        estimator.predictor_ = cast(StudentPredictor, estimator.predictor())
        return estimator


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def as_text_list(texts: Any) -> list[str]:
    return as_texts(texts, None, "unlabeled texts")
