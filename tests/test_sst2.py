"""Slow: each recipe on a slice of real SST-2 (../shared/data/sst2), default encoder.

Full-data figures are in BENCHMARKS.md; these check that every recipe learns real data well above chance.
"""

from __future__ import annotations

import pytest

from bertlstm import BertLSTMClassifier
from bertlstm.tasks.classify.data import load_labelled
from conftest import shared_data

SST2 = shared_data() / "sst2"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SST2 / "train.tsv").is_file(), reason=f"SST-2 not found at {SST2}"),
]


@pytest.mark.parametrize(
    ("mode", "n_train", "epochs", "floor"),
    [
        ("pooled", 4000, 3, 0.75),
        ("frozen", 4000, 3, 0.75),
        ("finetune", 2000, 2, 0.78),  # encoder lr 5e-5: 2e-5 is too low for this small encoder (BENCHMARKS.md)
    ],
)
def test_recipe_learns_sst2(mode: str, n_train: int, epochs: int, floor: float) -> None:
    texts, labels = load_labelled(SST2 / "train.tsv")
    dev = load_labelled(SST2 / "dev.tsv")
    clf = BertLSTMClassifier(mode=mode, epochs=epochs, encoder_lr=5e-5, progress=False, device="cpu", seed=0)
    clf.fit(texts[:n_train], labels[:n_train], *dev)
    assert clf.metrics_["dev_accuracy"] >= floor, clf.history_
