"""Train → save → load → the same predictions, in every recipe and option; folders are written atomically, and
a load → save reproduces the folder file for file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from bertlstm import BertLSTMClassifier, BertLSTMError
from conftest import make_multilabel, make_sentiment

CASES = {
    "frozen": {"mode": "frozen"},
    "pooled": {"mode": "pooled"},
    "finetune": {"mode": "finetune"},
    "bidirectional": {"mode": "frozen", "bidirectional": True, "lstm_layers": 2},
    "second-to-last": {"layers": "second-to-last"},
    "concat-last-4": {"layers": "concat-last-4"},
    "scalar-mix": {"mode": "finetune", "layers": "scalar-mix"},
    "multi-label": {"multi_label": True, "bidirectional": True},
}


def fit(encoder: str, data, **options) -> BertLSTMClassifier:
    options = {"epochs": 3, "lr": 1e-2, "encoder_lr": 1e-3, "progress": False, "device": "cpu", **options}
    return BertLSTMClassifier(encoder=encoder, lstm_units=16, **options).fit(*data)


@pytest.mark.parametrize("case", CASES)
def test_train_save_load_same_predictions(tiny_encoder, tiny_encoder_4, tmp_path: Path, case: str) -> None:
    options = CASES[case]
    multi = options.get("multi_label", False)
    texts, labels = make_multilabel(160, seed=1) if multi else make_sentiment(160, seed=1)
    data = (texts, [label.split(",") for label in labels]) if multi else (texts, labels)
    encoder = tiny_encoder_4 if case == "concat-last-4" else tiny_encoder
    clf = fit(encoder, data, **options)
    probe = make_sentiment(30, seed=5)[0]
    before = clf.predict_proba(probe)
    assert before.shape == (30, 3 if multi else 2)
    if multi:
        assert clf.labels_.thresholds is not None and len(clf.labels_.thresholds) == 3
    else:
        np.testing.assert_allclose(before.sum(1), 1.0, atol=1e-5)

    folder = clf.save_pretrained(tmp_path / "model")
    loaded = BertLSTMClassifier.from_pretrained(folder, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(probe), before)
    np.testing.assert_array_equal(loaded.predict(probe), clf.predict(probe))
    assert loaded.labels_ == clf.labels_ and loaded.config == clf.config and loaded.history_ == clf.history_


def test_the_folder_and_its_inverse(tiny_encoder: str, toy_data, tmp_path: Path) -> None:
    """save_pretrained writes a readable folder; from_pretrained then save_pretrained writes the same files."""
    clf = fit(tiny_encoder, toy_data, mode="frozen")
    first = clf.save_pretrained(tmp_path / "first")
    files = {p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "history.csv", "metrics.json", "encoder/tokenizer.json"} <= files
    meta = json.loads((first / "config.json").read_text())
    assert meta["format_version"] == 3 and meta["task"] == "classification" and meta["model"]["mode"] == "frozen"
    assert meta["labels"] == {"names": ["neg", "pos"], "multi_label": False, "thresholds": None, "kind": "str"}
    assert "torch" in meta["library_versions"] and set(meta["files"]) == files - {
        "config.json",
        "history.csv",
        "metrics.json",
        "README.md",
    }
    assert not any(k.startswith("encoder.") for k in load_file(first / "model.safetensors"))

    second = BertLSTMClassifier.from_pretrained(first, device="cpu").save_pretrained(tmp_path / "second")
    assert {p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file()} == files
    for name in sorted(files):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name


def test_training_learns_and_keeps_the_best_epoch(tiny_encoder: str, toy_data) -> None:
    texts, labels = toy_data
    clf = BertLSTMClassifier(encoder=tiny_encoder, lstm_units=16, epochs=6, lr=1e-2, progress=False, device="cpu")
    clf.fit(texts, labels, *make_sentiment(80, seed=2))
    dev = [row["dev_accuracy"] for row in clf.history_]
    assert len(dev) == 6 and clf.metrics_["dev_accuracy"] == max(dev)
    assert clf.metrics_["best_epoch"] == dev.index(max(dev)) + 1
    assert clf.metrics_["n_train"] == 160 and clf.metrics_["n_dev"] == 80
    test_texts, test_labels = make_sentiment(60, seed=9)
    assert clf.evaluate(test_texts, test_labels)["accuracy"] > 0.75  # chance is 0.5


def test_finetune_changes_the_encoder_and_frozen_does_not(tiny_encoder: str, toy_data) -> None:
    from transformers import AutoModel

    original = AutoModel.from_pretrained(tiny_encoder).state_dict()
    for mode, should_change in (("frozen", False), ("finetune", True)):
        state = fit(tiny_encoder, toy_data, mode=mode, epochs=1).model_.encoder.state_dict()
        floats = [k for k, v in original.items() if v.is_floating_point()]
        changed = any(not np.allclose(state[k].numpy(), original[k].numpy()) for k in floats)
        assert changed == should_change, mode


def test_same_seed_same_result(tiny_encoder: str, toy_data) -> None:
    a = fit(tiny_encoder, toy_data, epochs=2).predict_proba(toy_data[0][:10])
    b = fit(tiny_encoder, toy_data, epochs=2).predict_proba(toy_data[0][:10])
    np.testing.assert_array_equal(a, b)


def test_integer_labels_and_a_given_dev_set(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(80, seed=1)
    ints = np.array([1 if label == "pos" else 0 for label in labels])  # arrays work as well as lists
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False, device="cpu")
    clf.fit(texts[:60], ints[:60], texts[60:], ints[60:])
    assert clf.label_names == ["0", "1"] and clf.metrics_["n_dev"] == 20
    assert clf.classes_.tolist() == [0, 1] and set(clf.predict(texts[:5]).tolist()) <= {0, 1}  # as given: ints


def test_saving_over_a_model_is_atomic(tiny_encoder: str, toy_data, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model"
    first = fit(tiny_encoder, toy_data, epochs=1)
    first.save_pretrained(target)
    good = (target / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        first.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == good  # the good model is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # and no half-written folder is left


def test_errors_for_unusable_folders(tmp_path: Path) -> None:
    with pytest.raises(BertLSTMError, match="not a bertlstm model folder"):
        BertLSTMClassifier.from_pretrained(tmp_path)
    with pytest.raises(BertLSTMError, match="not trained yet"):
        BertLSTMClassifier().predict(["x"])


def test_library_logs_and_never_prints(tiny_encoder: str, toy_data, capsys, caplog) -> None:
    with caplog.at_level("INFO", logger="bertlstm"):
        fit(tiny_encoder, toy_data, epochs=2)
    out, err = capsys.readouterr()
    assert out == ""
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("bertlstm")]
    assert any(m.startswith("epoch 2/2: loss") for m in messages) and any("best epoch" in m for m in messages)
