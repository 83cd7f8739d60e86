"""The estimator base, through both of its tasks: scikit-learn's estimator API (settings as keyword arguments,
get_params / set_params / clone), the not-trained error, and one fit → save → load → same predictions."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path

import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks

from bertlstm import BertLSTMClassifier, BertLSTMError, BertLSTMTagger, ModelConfig, TaggerConfig, TrainConfig
from conftest import make_sentiment

ESTIMATORS = {"classifier": (BertLSTMClassifier, ModelConfig), "tagger": (BertLSTMTagger, TaggerConfig)}
# The estimator checks of scikit-learn that apply to an estimator whose X is texts or token lists: the others
# feed numeric 2-D arrays (dtypes, NaN/inf, sparse input, n_features_in_, sample orders and subsets), use
# sample_weight, partial_fit, or the _parameter_constraints machinery (settings are checked by their classes).
API_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_get_params_invariance",
    "check_set_params",
    "check_mixin_order",
    "check_estimators_unfitted",
    "check_valid_tag_types",
    "check_estimator_tags_renamed",
    "check_requires_y_none",
]


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("kind", ESTIMATORS)
def test_scikit_learns_estimator_checks_pass_for_both(tiny_encoder: str, kind: str, check: str) -> None:
    cls, _ = ESTIMATORS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(estimator_checks, check)(cls.__name__, cls(encoder=tiny_encoder, epochs=1, progress=False))


@pytest.mark.parametrize("kind", ESTIMATORS)
def test_every_setting_is_a_parameter_and_clone_keeps_them_all(kind: str) -> None:
    """The tagger's clone used to keep no setting (its signature was not generated)."""
    cls, config = ESTIMATORS[kind]
    names = [f.name for f in (*dataclasses.fields(config), *dataclasses.fields(TrainConfig))]
    assert list(inspect.signature(cls).parameters) == names
    given = {"lstm_units": 5, "dropout": 0.3, "epochs": 2, "seed": 7, "encoder": "some/where"}
    copy = clone(cls(**given))
    assert {k: copy.get_params()[k] for k in given} == given
    assert copy.get_params() == cls(**given).get_params() and len(copy.get_params()) == len(names)
    with pytest.raises(TypeError, match="lstm_unit"):
        cls(lstm_unit=3)


@pytest.mark.parametrize("kind", ESTIMATORS)
def test_predicting_before_training_is_a_clear_error(kind: str) -> None:
    cls, _ = ESTIMATORS[kind]
    with pytest.raises(BertLSTMError, match=f"this {kind} is not trained yet") as error:
        cls().predict(["a text"] if kind == "classifier" else [["a", "text"]])
    assert isinstance(error.value, NotFittedError)


def test_a_model_folder_of_one_task_is_refused_by_the_other(tiny_encoder: str, tmp_path: Path) -> None:
    texts, labels = make_sentiment(60, seed=1)
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False).fit(texts, labels)
    folder = clf.save_pretrained(tmp_path / "clf")
    with pytest.raises(BertLSTMError, match="a classification model, not a tagging model"):
        BertLSTMTagger.from_pretrained(folder)


def test_the_dev_report_is_the_best_epochs_own_outputs_computed_once(tiny_encoder: str, monkeypatch) -> None:
    from bertlstm.core import training

    calls: list[int] = []
    real = training.Trainer.eval_step
    monkeypatch.setattr(training.Trainer, "eval_step", lambda self, data: calls.append(1) or real(self, data))
    texts, labels = make_sentiment(80, seed=3)
    options = {"encoder": tiny_encoder, "epochs": 3, "lstm_units": 8, "max_length": 16}
    clf = BertLSTMClassifier(**options).fit(texts[:60], labels[:60], texts[60:], labels[60:])
    assert len(calls) == 3  # one per epoch, and no fourth pass for the report
    assert clf.metrics_["dev"]["accuracy"] == clf.metrics_["dev_accuracy"]
    assert clf.metrics_["dev"]["accuracy"] == (clf.predict(texts[60:]) == labels[60:]).mean()
