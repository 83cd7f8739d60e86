"""A training run from files (what ``bertlstm train`` calls), for each task through the one registry: every file
and setting checked before anything is built, the same rule for labels never seen in training, and a model
folder that loads as its task's estimator."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertlstm import BertLSTMError, BertLSTMTagger, ModelConfig, RunConfig, TagData, TaggerConfig, TrainConfig
from bertlstm.runs import train_run
from bertlstm.tasks.registry import load_estimator
from conftest import make_tagged, write_conll

QUICK = {"epochs": 1, "progress": False, "device": "cpu"}


def tagging_run(tiny_encoder: str, tmp_path: Path, **data: str) -> RunConfig:
    files = {name: str(write_conll(tmp_path / f"{name}.conll", *make_tagged(40, i))) for i, name in enumerate(data)}
    return RunConfig(
        task="tag",
        output=str(tmp_path / "tagger"),
        data=TagData(**{name: files[name] for name in data}),
        model=TaggerConfig(encoder=tiny_encoder, lstm_units=8, crf=True),
        training=TrainConfig(**QUICK),
    )


def test_a_tagging_run_writes_a_folder_its_task_loads(tiny_encoder: str, tmp_path: Path) -> None:
    metrics = train_run(tagging_run(tiny_encoder, tmp_path, train="x", dev="x", test="x"))
    assert {"dev_micro_f1", "test_micro_f1", "tag_scheme"} <= set(metrics)
    loaded = load_estimator(tmp_path / "tagger", device="cpu")
    assert isinstance(loaded, BertLSTMTagger) and loaded.tags_[0] == "O"
    assert not (tmp_path / "tagger.checkpoint").exists()


def test_dev_tags_never_seen_in_training_are_left_out_with_a_warning(tiny_encoder: str, tmp_path: Path) -> None:
    """The classifier's rule for labels, now the tagger's too (it used to be an error before any work)."""
    config = tagging_run(tiny_encoder, tmp_path, train="x")
    tokens, tags = make_tagged(10, 9)
    tags[0][0] = "B-ORG"
    dev = write_conll(tmp_path / "dev.conll", tokens, tags)
    config = RunConfig.from_dict({**config.to_dict(), "data": {"train": config.data.train, "dev": str(dev)}})
    with pytest.warns(UserWarning, match=r"dev data: 1 sentence\(s\) have tags never seen in training"):
        metrics = train_run(config)
    assert metrics["n_dev"] == 9
    only_unseen = write_conll(tmp_path / "bad.conll", [["actor"]], [["B-ORG"]])
    bad = RunConfig.from_dict({**config.to_dict(), "data": {"train": config.data.train, "dev": str(only_unseen)}})
    with pytest.raises(BertLSTMError, match="every sentence has tags never seen in training"):
        train_run(bad)


def test_settings_of_another_task_are_refused() -> None:
    with pytest.raises(BertLSTMError, match="`task` tagging needs TaggerConfig settings as its model"):
        RunConfig(task="tag", model=ModelConfig(), data=TagData())
    with pytest.raises(BertLSTMError, match="`task` must be one of classification, classify, tagging, tag"):
        RunConfig.from_dict({"task": "translate"})


def test_a_run_is_checked_whole_before_anything_is_built(tiny_encoder: str, tmp_path: Path) -> None:
    config = tagging_run(tiny_encoder, tmp_path, train="x")
    broken = tmp_path / "broken.conll"
    broken.write_text("actor B-PER\nscene\n")
    bad = RunConfig.from_dict({**config.to_dict(), "data": {"train": str(broken)}})
    with pytest.raises(BertLSTMError, match="line 2: expected a token and a tag"):
        train_run(bad)
    assert not (tmp_path / "tagger").exists() and not (tmp_path / "tagger.checkpoint").exists()


def test_a_label_that_looks_missing_warns_once(tiny_encoder: str, tmp_path: Path) -> None:
    """The run checks the labels before any work and the estimator learns them: one warning, not two."""
    from bertlstm.cli import main

    rows = [f"text {i} good,{label}" for i, label in enumerate(["a", "b", "NaN"] * 6)]
    (tmp_path / "train.csv").write_text(
        "text,label\n" + "\n".join(f'"{r.split(",")[0]}",{r.split(",")[1]}' for r in rows)
    )
    with pytest.warns(UserWarning) as caught:
        args = ["train", "--train", str(tmp_path / "train.csv"), "--encoder", tiny_encoder, "--epochs", "1"]
        assert main([*args, "--no-progress", "--output", str(tmp_path / "m")]) == 0
    assert sum("look like missing values" in str(w.message) for w in caught) == 1
