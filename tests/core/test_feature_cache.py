"""The feature cache: same results as the encoder, keyed (any change is a miss), damage detected."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from bertlstm import BertLSTMClassifier, BertLSTMError, BertLSTMModel, ModelConfig
from bertlstm.core.batching import pad_batch
from bertlstm.core.encoders import encoder_fingerprint
from bertlstm.core.feature_cache import CacheKey, FeatureCache, FeatureStore, texts_fingerprint
from bertlstm.core.inference import as_tensors
from bertlstm.tasks.classify.data import FeatureDataset, tokenize
from conftest import make_sentiment


def model_and_tokenizer(tiny_encoder: str, mode: str) -> tuple[BertLSTMModel, object]:
    config = ModelConfig(encoder=tiny_encoder, mode=mode, lstm_units=8)
    model = BertLSTMModel(config, AutoModel.from_pretrained(tiny_encoder), num_labels=2).eval()
    return model, AutoTokenizer.from_pretrained(tiny_encoder)


def build(cache: FeatureCache, key: CacheKey, model: BertLSTMModel, ids: list[list[int]], batch_size: int):
    return cache.build(key, model.encode, model.feature_size, ids, 0, batch_size)


def key_for(model, tokenizer, texts, mode="frozen", dtype="float32", max_length=32) -> CacheKey:
    return CacheKey(
        encoder="tiny",
        encoder_hash=encoder_fingerprint(model.encoder, tokenizer),
        layers="last",
        max_length=max_length,
        pooling="mean" if mode == "pooled" else "tokens",
        dtype=dtype,
        texts_hash=texts_fingerprint(texts),
        n_texts=len(texts),
    )


@pytest.mark.parametrize("mode", ["frozen", "pooled"])
def test_cached_features_give_the_encoders_logits(tiny_encoder: str, tmp_path: Path, mode: str) -> None:
    model, tokenizer = model_and_tokenizer(tiny_encoder, mode)
    texts = make_sentiment(50, seed=3)[0]
    ids = tokenize(tokenizer, texts, 32)
    store = build(FeatureCache(tmp_path), key_for(model, tokenizer, texts, mode), model, ids, 7)
    dataset = FeatureDataset(store)
    assert store.lengths == ([len(i) for i in ids] if mode == "frozen" else [1] * 50)
    rows = [3, 17, 40]
    with torch.no_grad():
        direct = model(*map(torch.from_numpy, pad_batch([ids[i] for i in rows], 0))).logits
        cached = model(**as_tensors(dataset.collate([dataset[i] for i in rows]))).logits
    torch.testing.assert_close(cached, direct, atol=1e-5, rtol=0)


def test_key_changes_are_misses_and_same_key_is_a_hit(tiny_encoder: str, tmp_path: Path) -> None:
    model, tokenizer = model_and_tokenizer(tiny_encoder, "frozen")
    texts = make_sentiment(20, seed=3)[0]
    cache = FeatureCache(tmp_path)
    key = key_for(model, tokenizer, texts)
    build(cache, key, model, tokenize(tokenizer, texts, 32), 8)
    assert cache.open(key) is not None
    assert cache.open(key_for(model, tokenizer, texts[:-1] + ["a different text"])) is None
    assert cache.open(dataclasses.replace(key, max_length=16)) is None
    assert cache.open(key_for(model, tokenizer, texts, mode="pooled")) is None
    with torch.no_grad():
        model.encoder.encoder.layer[0].output.dense.bias[0] += 1e-3  # the same encoder name, other weights
    assert cache.open(key_for(model, tokenizer, texts)) is None
    assert len(cache.entries()) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_damaged_entries_are_detected_and_rebuilt(tiny_encoder: str, tmp_path: Path, damage: str) -> None:
    model, tokenizer = model_and_tokenizer(tiny_encoder, "frozen")
    texts = make_sentiment(20, seed=3)[0]
    cache = FeatureCache(tmp_path)
    key = key_for(model, tokenizer, texts)
    store = build(cache, key, model, tokenize(tokenizer, texts, 32), 8)
    good = store[5].copy()
    features = store.folder / "features.bin"
    if damage == "truncate":
        features.write_bytes(features.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(features.read_bytes())
        data[100] ^= 0xFF
        features.write_bytes(bytes(data))
    else:
        (store.folder / "meta.json").write_text("{not json")
    with pytest.warns(UserWarning, match="damaged"):
        assert cache.open(key) is None
    rebuilt = build(cache, key, model, tokenize(tokenizer, texts, 32), 8)
    np.testing.assert_array_equal(rebuilt[5], good)


def test_training_with_and_without_cache_agree(tiny_encoder: str, toy_data, tmp_path: Path) -> None:
    texts, labels = toy_data
    options = dict(encoder=tiny_encoder, epochs=2, lr=1e-2, progress=False, device="cpu", cache_dir=str(tmp_path))
    plain = BertLSTMClassifier(mode="frozen", cache=False, **options).fit(texts, labels)
    cached = BertLSTMClassifier(mode="frozen", cache_dtype="float32", **options).fit(texts, labels)
    again = BertLSTMClassifier(mode="frozen", cache_dtype="float32", **options).fit(texts, labels)  # a warm run
    probe = make_sentiment(30, seed=8)[0]
    np.testing.assert_allclose(cached.predict_proba(probe), plain.predict_proba(probe), atol=1e-4)
    np.testing.assert_allclose(again.predict_proba(probe), cached.predict_proba(probe), atol=1e-6)
    assert len(FeatureCache(tmp_path).entries()) == 2  # train + dev, built once, read by the warm run
    half = BertLSTMClassifier(mode="frozen", **options).fit(texts, labels)  # float16 storage
    np.testing.assert_allclose(half.predict_proba(probe), plain.predict_proba(probe), atol=2e-2)


@pytest.mark.parametrize("mode", ["frozen", "pooled"])
def test_a_narrower_layer_choice_is_taken_from_a_wider_entry_without_the_encoder(
    tiny_encoder: str, tmp_path: Path, mode: str, logs
) -> None:
    texts, labels = make_sentiment(40, seed=5)
    options = {"encoder": tiny_encoder, "mode": mode, "progress": False, "device": "cpu", "cache_dtype": "float32"}
    wide = tmp_path / "wide"
    BertLSTMClassifier(**options, layers="scalar-mix", cache_dir=str(wide)).cache_features(texts, labels)
    assert logs.text.count("feature cache: encoded") == 2  # train and dev, every hidden state

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran for an entry the cache could take from a wider one")

    for layers in ("last", "second-to-last"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("bertlstm.core.feature_cache._write_batch", no_encoder)
            BertLSTMClassifier(**options, layers=layers, cache_dir=str(wide)).cache_features(texts, labels)
        alone = tmp_path / layers  # the same entries, from the encoder
        BertLSTMClassifier(**options, layers=layers, cache_dir=str(alone)).cache_features(texts, labels)
        for entry in FeatureCache(alone).entries():
            taken = FeatureStore(wide / entry["entry"], entry)
            encoded = FeatureStore(alone / entry["entry"], entry)
            assert len(taken) == len(encoded) == entry["key"]["n_texts"]
            np.testing.assert_allclose(taken.rows(0, len(taken)), encoded.rows(0, len(encoded)), atol=1e-6)
    assert logs.text.count("from a wider entry") == 4 and len(FeatureCache(wide).entries()) == 6


def test_clear(tiny_encoder: str, tmp_path: Path) -> None:
    model, tokenizer = model_and_tokenizer(tiny_encoder, "pooled")
    texts = make_sentiment(10, seed=3)[0]
    cache = FeatureCache(tmp_path / "c")
    build(cache, key_for(model, tokenizer, texts, "pooled"), model, tokenize(tokenizer, texts, 32), 4)
    assert cache.clear() > 0 and cache.entries() == [] and cache.clear() == 0


def test_an_int8_feature_pass_is_its_own_entry_and_close_to_fp32(tiny_encoder: str, tmp_path: Path) -> None:
    """`feature_pass` int8: an encoder with int8 linear layers fills the cache; its entry is keyed apart."""
    texts, labels = make_sentiment(60, seed=3)
    options = {"encoder": tiny_encoder, "epochs": 1, "progress": False, "cache_dir": str(tmp_path)}
    BertLSTMClassifier(**options, cache_dtype="float32").fit(texts, labels)
    quantized = BertLSTMClassifier(**options, cache_dtype="float32", feature_pass="int8").fit(texts, labels)
    entries = FeatureCache(tmp_path).entries()
    assert sorted(str(e["key"].get("quantized")) for e in entries) == ["None", "None", "int8", "int8"]  # train, dev
    train = sorted((e for e in entries if e["key"]["n_texts"] == 54), key=lambda e: e["key"].get("quantized") or "")
    fp32, int8 = (FeatureStore(tmp_path / e["entry"], e) for e in train)
    assert "(int8)" in FeatureCache(tmp_path).summary()
    assert quantized.model_.encoder.encoder.layer[0].attention.self.query.weight.dtype == torch.float32  # a copy
    different = max(float(np.abs(fp32[i] - int8[i]).max()) for i in range(len(fp32)))
    assert 0 < different < 0.5


def test_a_bf16_feature_pass_runs_only_where_the_hardware_has_bf16(tiny_encoder: str, tmp_path: Path, monkeypatch):
    """`feature_pass` bf16: keyed apart and close to fp32 where the CPU computes in bf16; refused elsewhere."""
    from bertlstm.core import feature_cache

    texts, labels = make_sentiment(60, seed=3)
    options = {"encoder": tiny_encoder, "epochs": 1, "progress": False, "cache_dir": str(tmp_path), "device": "cpu"}
    # Where this CPU lacks bf16 it is emulated: the same numbers (inputs rounded to bf16, sums in fp32), slower.
    monkeypatch.setattr(feature_cache, "native_bf16", lambda device: True)
    BertLSTMClassifier(**options, cache_dtype="float32", feature_pass="bf16").fit(texts, labels)
    BertLSTMClassifier(**options, cache_dtype="float32").fit(texts, labels)
    entries = FeatureCache(tmp_path).entries()
    train = sorted((e for e in entries if e["key"]["n_texts"] == 54), key=lambda e: e["key"].get("quantized") or "")
    assert [e["key"].get("quantized") for e in train] == [None, "bf16"]  # two entries, keyed apart
    fp32, bf16 = (FeatureStore(tmp_path / e["entry"], e) for e in train)
    different = max(float(np.abs(fp32[i] - bf16[i]).max()) for i in range(len(fp32)))
    scale = max(float(np.abs(fp32[i]).max()) for i in range(len(fp32)))
    assert 0 < different < 0.05 * scale  # bf16 keeps 8 bits of mantissa: a few parts in a thousand per product
    monkeypatch.setattr(feature_cache, "native_bf16", lambda device: False)
    with pytest.raises(BertLSTMError, match="`feature_pass` bf16 needs hardware that computes in bf16"):
        BertLSTMClassifier(**options, feature_pass="bf16").fit(texts, labels)


MACHINES = [(True, True, "bf16"), (False, True, "int8"), (False, False, "fp32")]  # bf16, int8 native: auto's pass


@pytest.mark.parametrize(("bf16", "int8", "chosen"), MACHINES)
def test_an_auto_feature_pass_is_the_fastest_the_machine_has_and_is_recorded(
    tiny_encoder: str, tmp_path: Path, monkeypatch, caplog, bf16: bool, int8: bool, chosen: str
) -> None:
    """`feature_pass` auto: bf16 where the hardware computes it, else int8 where the CPU has VNNI or AMX, else
    fp32; logged, in the model's settings and in the cache's keys, as if that pass had been asked for."""
    from bertlstm.core import feature_cache

    monkeypatch.setattr(feature_cache, "native_bf16", lambda device: bf16)
    monkeypatch.setattr(feature_cache, "native_int8", lambda device: int8)
    texts, labels = make_sentiment(60, seed=3)
    options = {"encoder": tiny_encoder, "epochs": 1, "progress": False, "cache_dir": str(tmp_path), "device": "cpu"}
    with caplog.at_level("INFO", logger="bertlstm"):
        model = BertLSTMClassifier(**options, feature_pass="auto").fit(texts, labels)
    assert f"feature pass {chosen} (auto: " in caplog.text
    assert model.get_params()["feature_pass"] == "auto" and model.training_.feature_pass == chosen
    entries = FeatureCache(tmp_path).entries()
    assert [e["key"].get("quantized") for e in entries] == [None if chosen == "fp32" else chosen] * 2  # train, dev
    saved = json.loads((model.save_pretrained(tmp_path / "model") / "config.json").read_text())
    assert saved["training"]["feature_pass"] == chosen
    BertLSTMClassifier(**options, feature_pass=chosen).fit(texts, labels)  # the same entries: nothing built
    assert len(FeatureCache(tmp_path).entries()) == 2


def test_the_encoder_hash_is_computed_once_until_a_weight_changes(tiny_encoder: str, monkeypatch) -> None:
    from bertlstm.core import encoders

    encoder, tokenizer = AutoModel.from_pretrained(tiny_encoder), AutoTokenizer.from_pretrained(tiny_encoder)
    calls: list[int] = []
    real = encoders.encoder_fingerprint
    monkeypatch.setattr(encoders, "encoder_fingerprint", lambda *a: calls.append(1) or real(*a))
    first = encoders.known_fingerprint(encoder, tokenizer)
    assert encoders.known_fingerprint(encoder, tokenizer) == first and len(calls) == 1
    with torch.no_grad():
        encoder.embeddings.word_embeddings.weight[0, 0] += 1.0  # in place: a new version
    assert encoders.known_fingerprint(encoder, tokenizer) != first and len(calls) == 2
    assert encoders.known_fingerprint(encoder, tokenizer, split=1) != first and len(calls) == 3
