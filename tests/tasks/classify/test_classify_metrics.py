"""Metrics, reports and the multi-label threshold tuning, on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from bertlstm import BertLSTMClassifier
from bertlstm.tasks.classify.metrics import (
    format_report,
    full_report,
    multilabel_metrics,
    multilabel_report,
    quick_metrics,
    tune_thresholds,
)
from conftest import make_multilabel


def test_quick_metrics() -> None:
    scores = quick_metrics([0, 0, 1, 1], [0, 1, 1, 1])
    assert scores["accuracy"] == 0.75
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # F1 of class 0 is 2/3, of class 1 is 0.8


def test_full_report_counts_every_class_even_one_never_predicted() -> None:
    report = full_report([0, 1, 2, 2], [0, 1, 1, 2], ["a", "b", "c"])
    assert report["n"] == 4 and report["accuracy"] == 0.75
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # rows: true
    assert report["per_class"]["c"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    text = format_report(report)
    assert "accuracy: 0.7500" in text and "confusion matrix" in text


def test_multilabel_metrics_and_report() -> None:
    y_true = np.array([[1, 0], [1, 1], [0, 1]])
    y_pred = np.array([[1, 0], [1, 0], [0, 1]])
    scores = multilabel_metrics(y_true, y_pred)
    assert scores["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # tp 3, fn 1, fp 0
    report = multilabel_report(y_true, y_pred, ["x", "y"])
    assert report["exact_match"] == pytest.approx(2 / 3) and report["per_label"]["y"]["recall"] == 0.5
    assert "exact match" in format_report(report)


def test_tuned_thresholds_separate_what_0_5_does_not() -> None:
    # label 0 is positive exactly when p >= 0.3; label 1 exactly when p >= 0.7
    proba = np.array([[0.1, 0.9], [0.35, 0.6], [0.3, 0.75], [0.2, 0.2], [0.6, 0.65]])
    y_true = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [1, 0]])
    per_label = tune_thresholds(y_true, proba, "per-label")
    assert 0.2 < per_label[0] <= 0.3 and 0.65 < per_label[1] <= 0.75
    assert ((proba >= np.array(per_label)) == y_true).all()
    shared = tune_thresholds(y_true, proba, "global")
    assert shared[0] == shared[1]
    assert tune_thresholds(y_true, proba, 0.4) == [0.4, 0.4]


@pytest.mark.parametrize("how", ["per-label", "global"])
def test_tuned_thresholds_are_scikit_learns_best(how: str) -> None:
    """The thresholds, computed for the whole grid at once, are the ones scikit-learn's F1 picks threshold by
    threshold (ties to the lowest), on random labels with probabilities rounded into ties."""
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        n, c = int(rng.integers(5, 200)), int(rng.integers(2, 12))
        y_true = (rng.random((n, c)) < rng.random(c) * 0.3).astype(int)
        proba = np.clip(y_true * rng.random((n, c)) * 0.7 + rng.random((n, c)) * 0.5, 0, 1).round(2)
        if how == "global":
            scores = [f1_score(y_true, proba >= t, average="macro", zero_division=0) for t in grid]
            want = [float(grid[int(np.argmax(scores))])] * c
        else:
            want = []
            for j in range(c):
                scores = [f1_score(y_true[:, j], proba[:, j] >= t, zero_division=0) for t in grid]
                want.append(float(grid[int(np.argmax(scores))]))
        assert tune_thresholds(y_true, proba, how) == want


def test_a_multi_label_epoch_is_scored_as_the_model_will_decide(tiny_encoder: str) -> None:
    """Each epoch's dev F1 is at thresholds tuned on dev (not 0.5): with one epoch, the saved model's dev
    report (at its tuned thresholds) gives the same micro-F1 as the epoch's row."""
    texts, labels = make_multilabel(120, seed=1)
    clf = BertLSTMClassifier(encoder=tiny_encoder, multi_label=True, epochs=1, lstm_units=8, progress=False)
    clf.fit(texts[:80], [s.split(",") for s in labels[:80]], texts[80:], [s.split(",") for s in labels[80:]])
    report = clf.predictor_.evaluate(texts[80:], [s.split(",") for s in labels[80:]])
    assert clf.history_[-1]["dev_micro_f1"] == pytest.approx(report["micro_f1"], abs=1e-6)
