"""BertLSTMClassifier as a scikit-learn classifier (pipelines, search, scores, the classes as given), and the
forms data comes in (DataFrames, Series, arrays, Hugging Face datasets). The estimator API checks that apply to
both tasks are in tests/core/test_estimator.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MultiLabelBinarizer

from bertlstm import BertLSTMClassifier, BertLSTMError
from conftest import make_multilabel, make_sentiment


def estimator(encoder: str, **options) -> BertLSTMClassifier:
    settings = {"lstm_units": 8, "epochs": 2, "lr": 1e-2, "progress": False, "device": "cpu", **options}
    return BertLSTMClassifier(encoder=encoder, **settings)


def test_params_are_the_settings_stored_unchanged(tiny_encoder: str) -> None:
    clf = estimator(tiny_encoder, class_weight="balanced")
    params = clf.get_params()
    assert params["lstm_units"] == 8 and params["class_weight"] == "balanced" and params["mode"] == "frozen"
    assert {"encoder_weight_decay", "cache_dtype", "threshold"} <= set(params)  # every setting
    clf.set_params(lstm_units=4, mode="pooled")
    assert clf.config.lstm_units == 4 and clf.config.mode == "pooled"
    with pytest.raises(TypeError, match="lstm_unit"):
        BertLSTMClassifier(lstm_unit=3)
    with pytest.raises(ValueError, match="Invalid parameter 'lstm_unit'"):
        clf.set_params(lstm_unit=3)
    assert "lstm_units=4" in repr(clf)


def test_clone_pipeline_grid_search_and_cross_validation(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(160, seed=1)
    fitted = estimator(tiny_encoder).fit(texts, labels)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "model_")
    with pytest.raises(NotFittedError):
        copy.predict(texts[:2])

    pipe = make_pipeline(FunctionTransformer(lambda x: [t.upper() for t in x]), estimator(tiny_encoder))
    predicted = pipe.fit(texts, labels).predict(texts[:10])
    assert isinstance(predicted, np.ndarray) and predicted.shape == (10,) and set(predicted) <= {"neg", "pos"}

    search = GridSearchCV(estimator(tiny_encoder), {"lstm_units": [4, 8]}, cv=2).fit(texts, labels)
    assert search.best_params_["lstm_units"] in (4, 8) and len(search.cv_results_["mean_test_score"]) == 2
    assert isinstance(search.best_estimator_, BertLSTMClassifier) and search.score(texts, labels) > 0.5
    scores = cross_val_score(estimator(tiny_encoder), texts, labels, cv=2)
    assert scores.shape == (2,) and all(float(s * 80).is_integer() for s in scores)  # accuracies on 80 texts


def test_predictions_are_arrays_of_the_classes_as_given(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(120, seed=1)
    numbers = np.array([int(label == "pos") for label in labels])
    clf = estimator(tiny_encoder).fit(texts, numbers)
    assert clf.classes_.tolist() == [0, 1] and clf.predict(texts[:4]).dtype.kind == "i"
    assert clf.score(texts, numbers) == accuracy_score(numbers, clf.predict(texts))
    proba = clf.predict_proba(texts[:4])
    assert proba.shape == (4, 2) and clf.predict(texts[:4]).tolist() == proba.argmax(1).tolist()
    with pytest.raises(BertLSTMError, match="Unknown label type: continuous"):
        estimator(tiny_encoder).fit(texts[:4], [0.5, 1.5, 2.25, 3.0])


def test_multi_label_with_a_binarizer(tiny_encoder: str) -> None:
    texts, joined = make_multilabel(160, seed=1)
    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform([cell.split(",") for cell in joined])  # (N, 3) 0/1
    clf = estimator(tiny_encoder, multi_label=True).fit(texts, y)
    assert clf.classes_.tolist() == [0, 1, 2] and clf.predict(texts[:5]).shape == (5, 3)
    predicted = clf.predict(texts)
    thresholds = np.asarray(clf.labels_.thresholds)  # tuned on dev, one per label
    assert (predicted == (clf.predict_proba(texts) >= thresholds)).all() and set(np.unique(predicted)) <= {0, 1}
    assert clf.score(texts, y) == accuracy_score(y, predicted)  # exact-match ratio, as scikit-learn scores it
    assert f1_score(y, predicted, average="micro") > 0.5  # the cue words are learnt
    names = binarizer.inverse_transform(predicted)  # the matrix reads back as label names
    assert all(set(row) <= set(binarizer.classes_) for row in names)


def test_dataframes_series_arrays_and_datasets(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(120, seed=1)
    frame = pd.DataFrame({"id": range(120), "text": texts, "label": labels})
    clf = estimator(tiny_encoder).fit(frame)  # text and label columns found by name
    assert clf.predict(frame).shape == (120,)  # not one label for the column name
    assert clf.predict(frame[["id", "text"]]).tolist() == clf.predict(texts).tolist()
    renamed = frame.rename(columns={"text": "body", "label": "y"})
    clf = estimator(tiny_encoder).fit(renamed, text_column="body", label_column="y")
    assert clf.predict(renamed).shape == (120,)  # the text column it was fitted with
    dev = make_sentiment(40, seed=2)
    for dev_labels in (pd.Series(dev[1]), np.array(dev[1])):
        fitted = estimator(tiny_encoder, epochs=1).fit(
            pd.Series(texts), np.array(labels), pd.Series(dev[0]), dev_labels
        )
        assert fitted.metrics_["n_dev"] == 40
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_pandas(frame)
    assert estimator(tiny_encoder, epochs=1).fit(dataset).predict(dataset).shape == (120,)


def test_tables_without_a_text_column_are_a_clear_error(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(60, seed=1)
    clf = estimator(tiny_encoder, epochs=1).fit(texts, labels)
    with pytest.raises(BertLSTMError, match="cannot tell which column holds the text"):
        clf.predict(pd.DataFrame({"words": texts}))
    with pytest.raises(BertLSTMError, match="every text must be a string"):
        clf.predict([1, 2])
    with pytest.raises(BertLSTMError, match="requires y to be passed"):
        estimator(tiny_encoder).fit(texts)


def test_pipeline_steps_see_plain_texts(tiny_encoder: str) -> None:
    """A Pipeline passes whatever the previous step returns: a list, or an array of one column."""
    texts, labels = make_sentiment(80, seed=1)
    column = FunctionTransformer(lambda x: np.asarray(x, dtype=object).reshape(-1, 1))
    pipe = Pipeline([("column", column), ("clf", estimator(tiny_encoder, epochs=1))]).fit(texts, labels)
    assert pipe.predict(texts[:3]).shape == (3,)
