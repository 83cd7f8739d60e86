"""A frozen encoder whose features are cached is loaded only when something runs it, and a model folder copies
its files, checked, instead of serialising it again (core.encoders)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertlstm import BertLSTMClassifier, BertLSTMDocumentClassifier, BertLSTMError, BertLSTMTagger
from bertlstm.core.feature_cache import FeatureCache
from bertlstm.core.model_folder import file_sha256
from conftest import make_sentiment, make_tagged, repo_root


def _fit(encoder: str, cache: Path, **settings: object) -> BertLSTMClassifier:
    texts, labels = make_sentiment(60, seed=1)
    options = {"encoder": encoder, "epochs": 1, "lstm_units": 8, "max_length": 16, "cache_dir": str(cache)}
    return BertLSTMClassifier(**{**options, **settings}).fit(texts, labels)


def _encoder_copy(tiny_encoder: str, tmp_path: Path) -> Path:
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, folder)
    return folder


def test_a_second_frozen_run_never_loads_the_encoder_and_saves_the_same_folder(tiny_encoder: str, tmp_path: Path):
    cache = tmp_path / "cache"
    first = _fit(tiny_encoder, cache)
    assert first.model_.encoder_loaded  # no note yet: loaded, and a note written
    second = _fit(tiny_encoder, cache)
    assert not second.model_.encoder_loaded, "the features were cached: nothing needed the encoder"
    assert len(second.tokenizer_) == len(first.tokenizer_) and second.pad_id == first.pad_id
    a, b = first.save_pretrained(tmp_path / "a"), second.save_pretrained(tmp_path / "b")
    files = json.loads((a / "config.json").read_text())["files"]
    assert files == json.loads((b / "config.json").read_text())["files"]  # the same weights, byte for byte
    for name in ("config.json", "model.safetensors", "tokenizer.json"):  # the encoder's own files, copied
        assert files[f"encoder/{name}"] == file_sha256(Path(tiny_encoder) / name)
    texts = ["a good film", "awful and dull", "fine"]
    expected = first.predict_proba(texts)
    assert not second.model_.encoder_loaded
    np.testing.assert_allclose(second.predict_proba(texts), expected, atol=1e-6)  # loaded now, on demand
    assert second.model_.encoder_loaded and not any(p.requires_grad for p in second.model_.encoder.parameters())
    np.testing.assert_allclose(BertLSTMClassifier.from_pretrained(b).predict_proba(texts), expected, atol=1e-6)
    assert second.tokenizer_.tokenize("a good film") == first.tokenizer_.tokenize("a good film")  # the rest: loaded


def test_such_a_run_imports_no_transformers(tiny_encoder: str, tmp_path: Path) -> None:
    script = f"""
import sys
from bertlstm import BertLSTMClassifier
texts, labels = ["good", "bad", "great", "awful"] * 8, ["pos", "neg", "pos", "neg"] * 8
settings = dict(encoder={tiny_encoder!r}, epochs=1, lstm_units=4, max_length=8, cache_dir={str(tmp_path)!r})
clf = BertLSTMClassifier(**settings).fit(texts, labels)
clf.save_pretrained({str(tmp_path / "model")!r}, overwrite=True)
print("transformers" in sys.modules, clf.predict(["good"])[0] in ("pos", "neg"), "transformers" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(repo_root() / "src")}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)]
    runs.append(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300))
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr[-2000:]
    assert runs[0].stdout.split() == ["True", "True", "True"]  # the first run loads it, and leaves its note
    # The second trains and saves on the cached features without transformers; predicting runs the encoder.
    assert runs[1].stdout.split() == ["False", "True", "True"]


def test_a_changed_encoder_file_is_loaded_again_or_refused(tiny_encoder: str, tmp_path: Path) -> None:
    folder, cache = _encoder_copy(tiny_encoder, tmp_path), tmp_path / "cache"
    _fit(str(folder), cache)
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")  # another file: another note
    assert _fit(str(folder), cache).model_.encoder_loaded
    lazy = _fit(str(folder), cache)
    assert not lazy.model_.encoder_loaded
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # the same size and time: only the checksum tells
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(BertLSTMError, match="changed after the encoder was loaded"):
        lazy.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    with pytest.raises(BertLSTMError, match="changed after this model was trained"):
        lazy.predict(["good"])


def test_an_encoder_changed_in_memory_is_serialised_not_copied(tiny_encoder: str, tmp_path: Path) -> None:
    clf = _fit(tiny_encoder, tmp_path / "cache")
    with torch.no_grad():
        clf.model_.encoder.embeddings.word_embeddings.weight[5, 0] = 3.0
    folder = clf.save_pretrained(tmp_path / "model")
    assert file_sha256(folder / "encoder/model.safetensors") != file_sha256(Path(tiny_encoder) / "model.safetensors")
    loaded = BertLSTMClassifier.from_pretrained(folder)
    assert loaded.model_.encoder.embeddings.word_embeddings.weight[5, 0].item() == 3.0
    again = loaded.save_pretrained(tmp_path / "again")  # a loaded folder, unchanged: its files are copied
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert file_sha256(again / "encoder" / name) == file_sha256(folder / "encoder" / name)


def test_fine_tuning_serialises_the_trained_encoder(tiny_encoder: str, tmp_path: Path) -> None:
    clf = _fit(tiny_encoder, tmp_path / "cache", mode="finetune")
    folder = clf.save_pretrained(tmp_path / "model")
    assert file_sha256(folder / "encoder/model.safetensors") != file_sha256(Path(tiny_encoder) / "model.safetensors")
    texts = ["a good film", "awful"]
    np.testing.assert_allclose(
        BertLSTMClassifier.from_pretrained(folder).predict_proba(texts), clf.predict_proba(texts), atol=1e-6
    )


def test_clearing_the_cache_clears_the_notes(tiny_encoder: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fit(tiny_encoder, cache)
    assert any((cache / "encoders").iterdir())
    assert "notes on 1 encoder folder(s)" in FeatureCache(cache).summary()
    FeatureCache(cache).clear()
    assert not (cache / "encoders").exists()
    assert _fit(tiny_encoder, cache).model_.encoder_loaded


@pytest.mark.parametrize("task", ["tagger", "document"])
def test_every_task_trains_on_cached_features_without_its_encoder(tiny_encoder: str, tmp_path: Path, task: str):
    settings = {"encoder": tiny_encoder, "epochs": 1, "lstm_units": 8, "cache_dir": str(tmp_path)}
    if task == "tagger":
        X, y = make_tagged(40, seed=2)
        runs = [BertLSTMTagger(**settings).fit(X, y) for _ in range(2)]
        sample: list = X[:3]
    else:
        X, y = make_sentiment(40, seed=2)
        X = [" ".join([text] * 6) for text in X]  # a few windows each
        settings = {**settings, "max_length": 32, "chunk_length": 12, "chunk_stride": 4}
        runs = [BertLSTMDocumentClassifier(**settings).fit(X, y) for _ in range(2)]
        sample = X[:3]
    assert runs[0].model_.encoder_loaded and not runs[1].model_.encoder_loaded
    a, b = runs[0].save_pretrained(tmp_path / "a"), runs[1].save_pretrained(tmp_path / "b")
    assert json.loads((a / "config.json").read_text())["files"] == json.loads((b / "config.json").read_text())["files"]
    if task == "tagger":
        assert runs[1].predict(sample) == runs[0].predict(sample)
    else:
        np.testing.assert_allclose(runs[1].predict_proba(sample), runs[0].predict_proba(sample), atol=1e-6)
