"""What a classifier learns about its labels from the training data: their names, and for multi-label tasks a
decision threshold per label. Also turns labels into training targets and probabilities back into labels."""

from __future__ import annotations

import math
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...core.errors import BertLSTMError, BertLSTMWarning

MISSING_LIKE = {"nan", "none", "null", "na", "n/a", "<na>"}


@dataclass(frozen=True)
class Labels:
    """Class names (index = class id) and, when multi-label, the tuned decision thresholds."""

    names: tuple[str, ...]
    multi_label: bool = False
    thresholds: tuple[float, ...] | None = None  # multi-label only: one per name, tuned on dev
    kind: str = "str"  # what the names were before they became names: "str", "int" or "float"

    def __len__(self) -> int:
        return len(self.names)

    # --- from the data -----------------------------------------------------------------------------
    @staticmethod
    def clean(labels: Any, multi_label: bool, where: str = "labels") -> list[Any]:
        """Labels as class names: strings, numbers read as numbers (``1.0`` and ``1`` are one class), or
        lists of strings when multi-label (from lists of names, or from a 0/1 matrix (N, C), whose column
        numbers become the names). Names are Unicode-normalised (NFC) without outer spaces, with a warning
        where that makes two spellings one class. A missing label (NaN, None) is an error; names that look
        like one (``"NaN"``) warn."""
        if multi_label:
            if _is_indicator(labels):
                return [[str(j) for j in np.flatnonzero(row)] for row in labels]
            if any(isinstance(label, str) for label in labels):
                raise BertLSTMError("with `multi_label`, each label must be a list of names, not a joined string")
            rows = [list(label) for label in labels]
            _check_present([name for row in rows for name in row], where)
            merged([name for row in rows for name in row], where)
            return [[_name(name) for name in row] for row in rows]
        labels = list(labels)
        _check_present(labels, where)
        merged(labels, where)
        return tidy([_name(label) for label in labels], where)

    @classmethod
    def learn(cls, labels: Any, multi_label: bool = False, where: str = "training labels") -> tuple[Labels, list[Any]]:
        """The labels of a training set as given, and those labels as class names (:meth:`clean`)."""
        clean = cls.clean(labels, multi_label, where)
        if multi_label and _is_indicator(labels):  # every column is a label, even one never set in training
            return cls(tuple(str(j) for j in range(labels.shape[1])), True, kind="int"), clean
        return cls.from_training(clean, multi_label, "str" if multi_label else kind_of(labels)), clean

    @classmethod
    def from_training(cls, labels: Sequence[Any], multi_label: bool = False, kind: str = "str") -> Labels:
        """Sorted names: numerically when every name is a whole number, else alphabetically. ``kind`` is
        :func:`kind_of` the labels as given, so that :meth:`classes` can give them back as they came."""
        names = sorted({n for row in labels for n in row} if multi_label else set(labels))
        if len(names) < 2:
            found = f"only one class ({names[0]!r})" if names else "no label at all"
            raise BertLSTMError(f"the training labels hold {found}; need at least two")
        if all(n.lstrip("-").isdigit() for n in names):
            names.sort(key=int)
        return cls(tuple(names), multi_label, kind=kind)

    def classes(self) -> np.ndarray:
        """The class names as the labels were given: strings, or numbers for numeric labels."""
        converter = {"int": int, "float": float}.get(self.kind, str)
        return np.array([converter(name) for name in self.names])

    def check_known(self, labels: Sequence[Any], where: str) -> None:
        """At least one row must name a known class, or nothing can be evaluated."""
        rows = labels if self.multi_label else [[label] for label in labels]
        if not any(name in self.names for row in rows for name in row):
            raise BertLSTMError(f"{where}: no row has a label the model knows ({', '.join(self.names[:10])})")

    def encode(self, labels: Sequence[Any], where: str) -> tuple[list[Any], list[int]]:
        """Targets for the rows the model can learn from, and those rows' positions.

        Single-label: class ids; rows with a label never seen in training are left out, with a warning.
        Multi-label: 0/1 rows (N, C) for every row; names never seen in training are dropped, with a warning.
        """
        index = {n: i for i, n in enumerate(self.names)}
        if self.multi_label:
            unseen = sorted({n for row in labels for n in row if n not in index})
            if unseen:
                warnings.warn(
                    f"{where}: label(s) never seen in training are ignored: {_few(unseen)}",
                    BertLSTMWarning,
                    stacklevel=2,
                )
            rows = [[int(n in row) for n in self.names] for row in labels]
            return rows, list(range(len(labels)))
        keep = [i for i, label in enumerate(labels) if label in index]
        if len(keep) < len(labels):
            unseen = sorted({label for label in labels if label not in index})
            warnings.warn(
                f"{where}: {len(labels) - len(keep)} row(s) have labels never seen in training ({_few(unseen)}); "
                "they are left out of evaluation",
                BertLSTMWarning,
                stacklevel=2,
            )
        self.check_known(labels, where)
        return [index[labels[i]] for i in keep], keep

    def warn_untrained(self, train: Sequence[Any], dev: Sequence[Any]) -> None:
        """Warn, naming them, about classes that dev holds but the training part never does (a class too small
        for the dev split left none there): the model cannot learn them, and on dev they can only be errors."""

        def seen(targets: Sequence[Any]) -> set[int]:
            rows = np.asarray(targets, dtype=int)
            return set(np.flatnonzero(rows.sum(0))) if self.multi_label else set(rows.tolist())

        untrained = sorted(seen(dev) - seen(train)) if len(train) and len(dev) else []
        if untrained:
            names = _few([self.names[i] for i in untrained])
            warnings.warn(
                f"dev data: {len(untrained)} class(es) occur in dev but never in the training data ({names}); "
                "the model cannot learn them, and on dev they count as errors",
                BertLSTMWarning,
                stacklevel=3,
            )

    def class_weights(self, spec: str | tuple[float, ...] | None, targets: Sequence[Any]) -> np.ndarray | None:
        """Loss weight per class: "balanced" (n / (C * count); multi-label: negatives / positives per label),
        or the given numbers, one per class."""
        if spec is None:
            return None
        if spec == "balanced":
            if self.multi_label:
                positives = np.asarray(targets).sum(0).clip(min=1)
                return (len(targets) - positives) / positives
            counts = np.bincount(np.asarray(targets, dtype=int), minlength=len(self)).clip(min=1)
            return len(targets) / (len(self) * counts)
        if len(spec) != len(self):
            raise BertLSTMError(
                f"{len(spec)} class weights for {len(self)} classes ({', '.join(self.names)})", "class_weight"
            )
        return np.asarray(spec, dtype=float)

    def tuned(self, thresholds: Sequence[float]) -> Labels:
        return replace(self, thresholds=tuple(float(t) for t in thresholds))

    # --- to names ----------------------------------------------------------------------------------
    def chosen(self, proba: np.ndarray) -> np.ndarray:
        """Multi-label decisions (N, C): each probability against its label's threshold (0.5 untuned)."""
        return proba >= np.asarray(self.thresholds or [0.5] * len(self))

    def decode(self, proba: np.ndarray) -> list[Any]:
        """The most probable name per row, or when multi-label every name whose probability reaches its
        threshold."""
        if self.multi_label:
            return [[self.names[j] for j in np.flatnonzero(row)] for row in self.chosen(proba)]
        return [self.names[i] for i in proba.argmax(-1)]

    # --- in config.json ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        thresholds = list(self.thresholds) if self.thresholds is not None else None
        return {"names": list(self.names), "multi_label": self.multi_label, "thresholds": thresholds, "kind": self.kind}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "labels") -> Labels:
        try:
            names = tuple(str(n) for n in values["names"])
            thresholds = values.get("thresholds")
            multi, kind = bool(values.get("multi_label", False)), str(values.get("kind", "str"))
            labels = cls(names, multi, tuple(map(float, thresholds or ())) or None, kind)
        except (KeyError, TypeError, ValueError):
            raise BertLSTMError(f"{where}: not a list of label names with optional thresholds") from None
        if labels.kind not in ("str", "int", "float"):
            raise BertLSTMError(f"{where}: kind must be str, int or float, not {labels.kind!r}")
        if len(names) < 2 or (labels.thresholds is not None and len(labels.thresholds) != len(names)):
            raise BertLSTMError(f"{where}: {len(names)} names and thresholds {thresholds} do not fit together")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:  # each output of the model is one class: a repeated name would hide another
            raise BertLSTMError(f"{where}: the label names repeat ({_few(repeated)}); each must be different")
        not_numbers = [n for n in names if labels.kind != "str" and _number(n) is None]
        if not_numbers:
            raise BertLSTMError(f"{where}: kind {labels.kind} needs numeric names, not {_few(not_numbers)}")
        return labels


def kind_of(labels: Sequence[Any]) -> str:
    """``int`` when every label is a whole number (``1`` or ``1.0``, not a string), ``float`` when every label
    is a number, else ``str`` (multi-label label sets are always ``str``)."""
    values = list(labels)
    numbers = [v for v in values if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)]
    if not values or len(numbers) < len(values) or not all(math.isfinite(v) for v in numbers):
        return "str"
    return "int" if all(float(v).is_integer() for v in numbers) else "float"


def tidy(labels: list[str], where: str) -> list[str]:
    """Numbers read as numbers (``"1.0"`` is ``"1"``), whatever else the labels hold; names such as ``"NaN"``
    kept, with a warning."""
    odd = sorted({label for label in labels if label.lower() in MISSING_LIKE})
    if odd:
        warnings.warn(
            f"{where}: label(s) {_few(odd)} look like missing values; kept as classes", BertLSTMWarning, stacklevel=3
        )
    numbers = [_number(label) for label in labels]
    canonical = [
        label if n is None else str(int(n)) if n.is_integer() else repr(n)
        for label, n in zip(labels, numbers, strict=True)
    ]
    changed = sorted({f"{a!r} as {b!r}" for a, b in zip(labels, canonical, strict=True) if a != b})
    if changed:
        warnings.warn(
            f"{where}: numeric labels read as numbers: {', '.join(changed[:5])}", BertLSTMWarning, stacklevel=3
        )
    return canonical


def _is_indicator(labels: Any) -> bool:
    """A 0/1 matrix (N, C), as scikit-learn's MultiLabelBinarizer makes them."""
    return isinstance(labels, np.ndarray) and labels.ndim == 2 and bool(np.isin(labels, (0, 1)).all())


def _name(value: Any) -> str:
    """A label as a class name: whole numbers without a decimal point (``1.0`` is ``"1"``); text in Unicode's
    composed form (NFC: ``e`` + accent is ``é``) without outer spaces."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return unicodedata.normalize("NFC", str(value)).strip()


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA: no label at all (the CLI refuses such a cell as empty)."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, and pandas' NA and NaT, are not equal to themselves
    except (TypeError, ValueError):  # NA's comparison cannot be a bool
        return True


def _check_present(labels: Sequence[Any], where: str) -> None:
    bad = [i for i, label in enumerate(labels) if _missing(label) or (isinstance(label, str) and not label.strip())]
    if bad:
        raise BertLSTMError(
            f"{where}: {len(bad)} label(s) are missing or empty (the first at position {bad[0]}: "
            f"{labels[bad[0]]!r}); give every example a label, or leave it out"
        )


def merged(labels: Sequence[Any], where: str) -> None:
    """Warn where different spellings become one class name (``café`` composed and decomposed; ``food`` and
    ``food `` with a space)."""
    spellings: dict[str, set[str]] = {}
    for label in labels:
        if isinstance(label, str):
            spellings.setdefault(_name(label), set()).add(label)
    joined = {name: sorted(found) for name, found in spellings.items() if len(found) > 1}
    if joined:
        shown = "; ".join(f"{' and '.join(map(repr, found))} as {name!r}" for name, found in list(joined.items())[:5])
        warnings.warn(f"{where}: labels spelled differently are one class: {shown}", BertLSTMWarning, stacklevel=4)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _few(names: Sequence[str]) -> str:
    return ", ".join(map(repr, list(names)[:5]))
