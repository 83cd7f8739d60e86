"""Partial fine-tuning (``train_top_layers``): the top K encoder layers train on cached states of the frozen
ones, and that is the same model as running the whole encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertlstm import BertLSTMClassifier, BertLSTMError
from bertlstm.core.config import TrainConfig
from bertlstm.core.encoders import load_encoder
from bertlstm.core.feature_cache import FeatureCache, model_features
from bertlstm.core.inference import predict_logits
from bertlstm.tasks.classify.config import ModelConfig
from bertlstm.tasks.classify.data import FeatureDataset, TokenDataset, tokenize
from bertlstm.tasks.classify.model import BertLSTMModel
from bertlstm.tasks.tag.estimator import BertLSTMTagger
from conftest import make_sentiment, make_tagged

OPTIONS = {"mode": "finetune", "epochs": 2, "lstm_units": 8, "lr": 1e-2, "encoder_lr": 1e-3, "progress": False}


def fit(encoder: str, **options) -> BertLSTMClassifier:
    return BertLSTMClassifier(encoder=encoder, **{**OPTIONS, **options}).fit(*make_sentiment(80, seed=1))


@pytest.mark.parametrize("layers", ["last", "second-to-last", "concat-last-4", "scalar-mix"])
@pytest.mark.parametrize("top", [1, 2, 3])
def test_cached_states_give_the_whole_encoders_logits(tiny_encoder_4: str, tmp_path: Path, layers: str, top: int):
    """From the feature cache (float32) through the top layers = the whole encoder on token ids, to 1e-5."""
    encoder, tokenizer = load_encoder(tiny_encoder_4)
    config = ModelConfig(encoder=tiny_encoder_4, mode="finetune", layers=layers, train_top_layers=top, lstm_units=8)
    model = BertLSTMModel(config, encoder, 2).eval()
    assert model.split == 4 - top
    texts = make_sentiment(40, seed=2)[0]
    training = TrainConfig(cache_dir=str(tmp_path), cache_dtype="float32", encode_batch_size=16)
    ids = tokenize(tokenizer, texts, config.max_length)
    store = model_features(model, tokenizer, texts, lambda: ids, training, torch.device("cpu"), "texts")
    assert store.hidden == 32 * len(model.cached_ids)
    from_cache = predict_logits(model, FeatureDataset(store), 7, torch.device("cpu"))
    whole = predict_logits(model, TokenDataset(ids), 7, torch.device("cpu"))
    np.testing.assert_allclose(from_cache, whole, atol=1e-5, rtol=0)


def test_all_layers_is_todays_finetune(tiny_encoder: str) -> None:
    """K = the encoder's depth, cache off: exactly the full fine-tune (same weights after training)."""
    full = fit(tiny_encoder, cache=False)
    top = fit(tiny_encoder, cache=False, train_top_layers=2)
    assert top.model_.split is None
    for (name, a), b in zip(full.model_.state_dict().items(), top.model_.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert full.history_[-1]["train_loss"] == top.history_[-1]["train_loss"]


def test_training_on_cached_states_equals_training_the_whole_encoder(tiny_encoder_4: str) -> None:
    """The same run read from the cache (float32) or through the whole encoder: same losses, same weights."""
    cached = fit(tiny_encoder_4, train_top_layers=2, cache_dtype="float32")
    direct = fit(tiny_encoder_4, train_top_layers=2, cache=False)
    for a, b in zip(cached.history_, direct.history_, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["dev_accuracy"] == b["dev_accuracy"]
    for (name, a), b in zip(cached.model_.state_dict().items(), direct.model_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)


def test_only_the_top_layers_train_and_the_rest_runs_without_dropout(tiny_encoder_4: str, tmp_path: Path) -> None:
    clf = fit(tiny_encoder_4, train_top_layers=1)
    original, trained = load_encoder(tiny_encoder_4)[0].state_dict(), clf.model_.encoder.state_dict()
    for name, weight in trained.items():
        top = name.startswith("encoder.layer.3.")
        assert torch.equal(weight, original[name]) != top, name
    model = clf.model_.train()
    assert not model.encoder.embeddings.training
    assert [layer.training for layer in model.encoder.encoder.layer] == [False, False, False, True]
    # One ordinary model folder: the encoder with all its layers, and predictions as in memory.
    probe = make_sentiment(20, seed=5)[0]
    loaded = BertLSTMClassifier.from_pretrained(clf.save_pretrained(tmp_path / "model"), device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(probe), clf.predict_proba(probe))
    assert loaded.config.train_top_layers == 1


def test_the_cache_entry_holds_the_frozen_states_once(tiny_encoder_4: str, tmp_path: Path) -> None:
    """Keyed by the split point; its key ignores the trained layers, so a resumed or repeated run finds it."""
    first = fit(tiny_encoder_4, train_top_layers=1, cache_dir=str(tmp_path))
    entries = FeatureCache(tmp_path).entries()
    assert len(entries) == 2 and {e["key"]["split"] for e in entries} == {3}  # train and dev
    fit(tiny_encoder_4, train_top_layers=1, cache_dir=str(tmp_path), seed=1)
    assert len(FeatureCache(tmp_path).entries()) == 4  # another seed: another dev split
    fit(tiny_encoder_4, train_top_layers=2, cache_dir=str(tmp_path))
    assert len(FeatureCache(tmp_path).entries()) == 6
    assert "frozen layers <3" in FeatureCache(tmp_path).summary()
    again = fit(tiny_encoder_4, train_top_layers=1, cache_dir=str(tmp_path))
    assert [h["train_loss"] for h in again.history_] == [h["train_loss"] for h in first.history_]
    assert len(FeatureCache(tmp_path).entries()) == 6  # read back, nothing rebuilt


def test_tagger_trains_its_top_layers_on_cached_states(tiny_encoder: str) -> None:
    tokens, tags = make_tagged(60, 0)
    kwargs = {"encoder": tiny_encoder, "mode": "finetune", "train_top_layers": 1, "epochs": 2, "progress": False}
    cached = BertLSTMTagger(**kwargs, lstm_units=8, cache_dtype="float32").fit(tokens, tags)
    direct = BertLSTMTagger(**kwargs, lstm_units=8, cache=False).fit(tokens, tags)
    for a, b in zip(cached.history_, direct.history_, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert cached.predict(tokens[:5]) == direct.predict(tokens[:5])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "frozen", "train_top_layers": 1}, "`train_top_layers` is for mode finetune"),
        ({"train_top_layers": 0}, "`train_top_layers` must be"),
        ({"train_top_layers": 3}, "`train_top_layers` 3 is more than the encoder's 2 layers"),
    ],
)
def test_bad_settings_are_clear_errors(tiny_encoder: str, options: dict, message: str) -> None:
    with pytest.raises(BertLSTMError, match=message):
        fit(tiny_encoder, **options)
