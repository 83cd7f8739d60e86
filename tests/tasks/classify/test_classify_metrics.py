"""Metrics, reports and the multi-label threshold tuning, on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bertlstm.tasks.classify.metrics import (
    format_report,
    full_report,
    multilabel_metrics,
    multilabel_report,
    quick_metrics,
    tune_thresholds,
)


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
