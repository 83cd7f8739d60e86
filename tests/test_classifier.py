"""Train → save → load → the same predictions, in every recipe; folders are written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from bertlstm import BertLSTMClassifier, BertLSTMError
from conftest import make_sentiment


def fit(tiny_encoder: str, mode: str, data, **options) -> BertLSTMClassifier:
    texts, labels = data
    options = {"epochs": 3, "lr": 1e-2, "encoder_lr": 1e-3, "progress": False, "device": "cpu", **options}
    return BertLSTMClassifier(mode=mode, encoder=tiny_encoder, lstm_units=16, **options).fit(texts, labels)


@pytest.mark.parametrize("mode", ["frozen", "pooled", "finetune"])
def test_train_save_load_same_predictions(tiny_encoder: str, toy_data, tmp_path: Path, mode: str) -> None:
    clf = fit(tiny_encoder, mode, toy_data)
    texts = make_sentiment(30, seed=5)[0]
    before = clf.predict_proba(texts)
    assert before.shape == (30, 2)
    np.testing.assert_allclose(before.sum(1), 1.0, atol=1e-5)

    folder = clf.save_pretrained(tmp_path / "model")
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "encoder",
        "history.csv",
        "metrics.json",
    }
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format_version"] == 2 and meta["model"]["mode"] == mode
    assert meta["model"]["label_names"] == ["neg", "pos"] and "torch" in meta["library_versions"]
    assert not any(k.startswith("encoder.") for k in load_file(folder / "model.safetensors"))

    loaded = BertLSTMClassifier.from_pretrained(folder, device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(texts), before, atol=1e-6)
    assert loaded.predict(texts) == clf.predict(texts)
    assert loaded.label_names == ["neg", "pos"]


def test_training_learns_and_keeps_the_best_epoch(tiny_encoder: str, toy_data) -> None:
    texts, labels = toy_data
    clf = BertLSTMClassifier(encoder=tiny_encoder, lstm_units=16, epochs=6, lr=1e-2, progress=False, device="cpu")
    clf.fit(texts, labels, *make_sentiment(80, seed=2))
    dev = [row["dev_accuracy"] for row in clf.history]
    assert len(dev) == 6 and clf.metrics["dev_accuracy"] == max(dev)
    assert clf.metrics["best_epoch"] == dev.index(max(dev)) + 1
    test_texts, test_labels = make_sentiment(60, seed=9)
    assert clf.evaluate(test_texts, test_labels)["accuracy"] > 0.75  # chance is 0.5


def test_finetune_changes_the_encoder_and_frozen_does_not(tiny_encoder: str, toy_data) -> None:
    from transformers import AutoModel

    original = AutoModel.from_pretrained(tiny_encoder).state_dict()
    for mode, should_change in (("frozen", False), ("finetune", True)):
        state = fit(tiny_encoder, mode, toy_data, epochs=1).model.encoder.state_dict()
        floats = [k for k, v in original.items() if v.is_floating_point()]
        changed = any(not np.allclose(state[k].numpy(), original[k].numpy()) for k in floats)
        assert changed == should_change, mode


def test_same_seed_same_result(tiny_encoder: str, toy_data) -> None:
    a = fit(tiny_encoder, "frozen", toy_data, epochs=2).predict_proba(toy_data[0][:10])
    b = fit(tiny_encoder, "frozen", toy_data, epochs=2).predict_proba(toy_data[0][:10])
    np.testing.assert_array_equal(a, b)


def test_integer_labels_and_a_given_dev_set(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(80, seed=1)
    ints = [1 if label == "pos" else 0 for label in labels]
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False, device="cpu")
    clf.fit(texts[:60], ints[:60], texts[60:], ints[60:])
    assert clf.label_names == ["0", "1"] and clf.metrics["n_dev"] == 20
    assert set(clf.predict(texts[:5])) <= {"0", "1"}


def test_saving_over_a_model_is_atomic(tiny_encoder: str, toy_data, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model"
    first = fit(tiny_encoder, "frozen", toy_data, epochs=1)
    first.save_pretrained(target)
    good = (target / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("bertlstm.classifier.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        first.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == good  # the good model is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # and no half-written folder is left


def test_errors_for_unusable_folders(tmp_path: Path) -> None:
    with pytest.raises(BertLSTMError, match="not a bertlstm model folder"):
        BertLSTMClassifier.from_pretrained(tmp_path)
    with pytest.raises(BertLSTMError, match="not trained yet"):
        BertLSTMClassifier().predict(["x"])
