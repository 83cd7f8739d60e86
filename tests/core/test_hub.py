"""Hugging Face Hub folders: model cards, loading a repository id from the Hub cache, pushing, and Hub
datasets as data (all offline: a local Hub cache, a fake upload, and an address where nothing listens)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bertlstm import BertLSTMClassifier, BertLSTMError
from bertlstm.core.model_card import model_card
from conftest import cli_train, make_sentiment

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.fixture(scope="module")
def trained(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("card")
    texts, labels = make_sentiment(80, seed=1)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(folder / "train.csv", index=False)
    assert cli_train(tiny_encoder, folder / "model", "--train", folder / "train.csv", "--epochs", 1) == 0
    return folder / "model"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_model_card(trained: Path) -> None:
    card = (trained / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "bertlstm" and meta["pipeline_tag"] == "text-classification"
    assert meta["labels"] == ["neg", "pos"] and meta["license"] == "other" and "base_model" not in meta  # a folder
    scores = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert set(scores) == {"dev accuracy", "dev macro f1"}
    assert "Trained with\n\n```\nbertlstm train --encoder" in card and "--epochs 1" in card  # the exact command
    assert "## Settings" in card and "| lstm_units | 64 |" in card and "## History" in card  # the report's summary
    sections = json.loads((trained / "config.json").read_text())
    with_default = {**sections, "model": {**sections["model"], "encoder": "minilm"}}
    default = model_card("user/sentiment", with_default, {}, [], BertLSTMClassifier.card)
    meta = front_matter(default)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert 'from_pretrained("user/sentiment")' in default


def _hub_cache(trained: Path, cache: Path, repo: str = "someone/tiny-sentiment") -> None:
    """What `hf download` leaves in the cache: refs/main naming a snapshot folder that holds the files."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(trained, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


def test_a_repository_id_loads_from_the_hub_cache(trained: Path, tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants as constants

    _hub_cache(trained, tmp_path / "hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    texts = make_sentiment(10, seed=4)[0]
    loaded = BertLSTMClassifier.from_pretrained("someone/tiny-sentiment", device="cpu")
    local = BertLSTMClassifier.from_pretrained(trained, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(texts), local.predict_proba(texts))
    with pytest.raises(BertLSTMError, match="could not fetch model 'someone/missing' from the Hugging Face Hub"):
        BertLSTMClassifier.from_pretrained("someone/missing")


def test_an_unreachable_hub_is_one_error_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": UNREACHABLE, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    env["HF_HUB_ETAG_TIMEOUT"] = env["HF_HUB_DOWNLOAD_TIMEOUT"] = "2"
    result = subprocess.run(
        [sys.executable, "-m", "bertlstm.cli", "predict", "--model", "someone/elsewhere", "--text", "good"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "could not fetch model 'someone/elsewhere' from the Hugging Face Hub" in errors[0]


def test_push_to_hub_uploads_a_complete_folder(trained: Path, tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    uploaded = tmp_path / "uploaded"

    class FakeApi:
        def __init__(self, token=None) -> None:
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, commit_message):
            shutil.copytree(folder_path, uploaded)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    clf = BertLSTMClassifier.from_pretrained(trained, device="cpu")
    assert clf.push_to_hub("someone/tiny-sentiment") == "https://huggingface.co/someone/tiny-sentiment"
    assert 'from_pretrained("someone/tiny-sentiment")' in (uploaded / "README.md").read_text()
    texts = make_sentiment(5, seed=4)[0]
    np.testing.assert_array_equal(
        BertLSTMClassifier.from_pretrained(uploaded).predict_proba(texts), clf.predict_proba(texts)
    )


def test_pushing_to_an_unreachable_hub_is_a_clear_error(trained: Path, monkeypatch) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    clf = BertLSTMClassifier.from_pretrained(trained, device="cpu")
    with pytest.raises(BertLSTMError, match="could not push to the Hugging Face Hub as someone/x"):
        clf.push_to_hub("someone/x", token="hf_not_a_real_token")
    with pytest.raises(BertLSTMError, match="not a Hub repository id"):
        clf.push_to_hub("no-slash")


def test_hub_datasets_as_training_data(tiny_encoder: str, tmp_path: Path) -> None:
    """`--train hf:NAME[:SPLIT]`, here with a local dataset folder (offline); an unknown one is an error."""
    pytest.importorskip("datasets")
    data = tmp_path / "reviews"
    data.mkdir()
    for split, n, seed in (("train", 80, 1), ("test", 20, 3)):
        texts, labels = make_sentiment(n, seed)
        pd.DataFrame({"text": texts, "label": labels}).to_csv(data / f"{split}.csv", index=False)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "c")}
    command = [sys.executable, "-m", "bertlstm.cli", "train", "--encoder", tiny_encoder, "--epochs", "1"]
    result = subprocess.run(
        [*command, "--train", f"hf:{data}", "--test", f"hf:{data}:test", "--output", str(tmp_path / "m"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["test"]["n"] == 20 and metrics["n_train"] + metrics["n_dev"] == 80
    missing = subprocess.run(
        [*command, "--train", "hf:someone/no-such-dataset", "--output", str(tmp_path / "m2")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert missing.returncode == 2 and "could not load dataset 'someone/no-such-dataset'" in missing.stderr
