"""The trainer: accumulation, class weights, early stopping, checkpoints and resume, multi-label, seeds."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from bertlstm import BertLSTMClassifier, BertLSTMModel, ModelConfig, TrainConfig
from bertlstm.cli import main
from bertlstm.core.inference import as_tensors
from bertlstm.core.training import Trainer
from bertlstm.tasks.classify.data import TokenDataset, tokenize
from conftest import cli_train, make_multilabel, make_sentiment


def test_gradient_accumulation_equals_one_large_batch(tiny_encoder: str) -> None:
    """Two micro-batches of 8 and 7 examples make the same step as one batch of 15."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    texts, labels = make_sentiment(15, seed=4)
    data = TokenDataset(tokenize(tokenizer, texts, 32), [int(label == "pos") for label in labels])
    states = []
    for groups in ([list(range(15))], [list(range(8)), list(range(8, 15))]):
        torch.manual_seed(0)
        config = ModelConfig(encoder=tiny_encoder, mode="finetune", lstm_units=8, dropout=0.0)
        encoder = AutoModel.from_pretrained(tiny_encoder, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model = BertLSTMModel(config, encoder, num_labels=2)
        trainer = Trainer(model, TrainConfig(device="cpu", grad_accum=len(groups), max_grad_norm=0), score=None)
        trainer.prepare(data)
        model.train()
        trainer.train_step([as_tensors(data.collate([data[i] for i in rows])) for rows in groups])
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], atol=1e-6, rtol=1e-5, msg=key)


def test_balanced_weights_lift_the_rare_class(tiny_encoder: str) -> None:
    texts, labels = make_sentiment(400, seed=1)
    keep = [i for i, label in enumerate(labels) if label == "pos"][:20] + [
        i for i, y in enumerate(labels) if y == "neg"
    ]
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]  # 20 pos vs 200 neg
    dev, probe = make_sentiment(100, seed=2), make_sentiment(100, seed=7)
    recall = {}
    for weight in (None, "balanced"):
        clf = BertLSTMClassifier(
            encoder=tiny_encoder,
            epochs=4,
            lr=1e-2,
            progress=False,
            device="cpu",
            class_weight=weight,
            metric="macro_f1",
        )
        clf.fit(texts, labels, *dev)
        recall[weight] = clf.evaluate(*probe)["per_class"]["pos"]["recall"]
    assert recall["balanced"] >= recall[None] + 0.3


def test_patience_stops_early(tiny_encoder: str, toy_data) -> None:
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=6, lr=1e-12, patience=2, progress=False, device="cpu")
    clf.fit(*toy_data)
    assert len(clf.history_) == 3 and clf.metrics_["best_epoch"] == 1  # nothing can improve at lr 1e-12


def _write_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_encoder: str, tmp_path: Path) -> None:
    train = _write_csv(tmp_path / "train.csv", *make_sentiment(2000, seed=1))
    dev = _write_csv(tmp_path / "dev.csv", *make_sentiment(100, seed=2))

    def command(output: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bertlstm.cli",
            "train",
            "--train",
            str(train),
            "--dev",
            str(dev),
            "--mode",
            "finetune",
            "--encoder",
            tiny_encoder,
            "--epochs",
            "2",
            "--lr",
            "0.01",
            "--encoder-lr",
            "0.001",
            "--device",
            "cpu",
            "--no-progress",
            "--checkpoint-minutes",
            "0",
            "--output",
            str(output),
        ]

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True, timeout=600)

    killed = subprocess.Popen(command(tmp_path / "cut"), env=env, stderr=subprocess.PIPE, text=True)
    for line in killed.stderr:
        if line.startswith("checkpoint saved"):
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut").exists()
    state = json.loads((tmp_path / "cut.checkpoint" / "state" / "trainer_state.json").read_text())
    assert state["epoch"] == 1  # killed during the second epoch

    resumed = subprocess.run(
        [sys.executable, "-m", "bertlstm.cli", "train", "--resume", str(tmp_path / "cut")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "epoch 1/2" not in resumed.stderr
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut["dev_accuracy"] == whole["dev_accuracy"] and cut["best_epoch"] == whole["best_epoch"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns=["train_seconds", "eval_seconds", "examples_per_s"]),
        pd.read_csv(tmp_path / "whole" / "history.csv").drop(
            columns=["train_seconds", "eval_seconds", "examples_per_s"]
        ),
    )
    assert not (tmp_path / "cut.checkpoint").exists()  # removed once the model folder is written


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_multi_label_end_to_end(tiny_encoder: str, tmp_path: Path, capsys) -> None:
    train = _write_csv(tmp_path / "train.csv", *make_multilabel(400, seed=1))
    dev = _write_csv(tmp_path / "dev.csv", *make_multilabel(100, seed=2))
    test = _write_csv(tmp_path / "test.csv", *make_multilabel(100, seed=3))
    out = tmp_path / "model"
    files = ["--train", train, "--dev", dev, "--test", test]
    options = ["--multi-label", "--mode", "frozen", "--bidirectional", "--epochs", 6, "--lr", 0.01]
    assert cli_train(tiny_encoder, out, *files, *options) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "macro_f1" and metrics["test_micro_f1"] > 0.7
    labels = json.loads((out / "config.json").read_text())["labels"]
    assert labels["names"] == ["cinema", "neg", "pos"] and len(labels["thresholds"]) == 3
    assert not list(out.glob("*.png"))  # plots are drawn when asked for
    assert main(["report", str(out), "--plots"]) == 0
    assert (out / "per_label_f1.png").is_file() and (out / "history.png").is_file()
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--text", "good movie", "--label-separator", "|"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[1].split(",")
    assert row[0] == "good movie" and set(row[1].split("|")) <= {"cinema", "neg", "pos"}
    assert main(["evaluate", "--model", str(out), "--data", str(test), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"micro_f1", "macro_f1", "per_label", "exact_match"} <= set(report)
    assert report["micro_f1"] == pytest.approx(metrics["test_micro_f1"])
    texts, labels = make_multilabel(100, seed=3)  # the same test set as JSON Lines with list-valued labels
    as_lists = tmp_path / "test.jsonl"
    pd.DataFrame({"text": texts, "labels": [cell.split(",") for cell in labels]}).to_json(
        as_lists, orient="records", lines=True
    )
    assert main(["evaluate", "--model", str(out), "--data", str(as_lists), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_f1"] == pytest.approx(report["micro_f1"])


def test_seeds_train_different_models_and_report_mean_and_std(
    tiny_encoder: str, toy_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    files = ["--train", toy_files["train"], "--dev", toy_files["dev"], "--test", toy_files["test"]]
    assert cli_train(tiny_encoder, out, *files, "--epochs", 1, "--seeds", "0,1,2") == 0
    seeds = json.loads((out / "seeds.json").read_text())
    assert seeds["seeds"] == [0, 1, 2]
    weights = [load_file(out / f"seed-{s}" / "model.safetensors")["head.weight"] for s in (0, 1, 2)]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])  # really other seeds
    trained = [json.loads((out / f"seed-{s}" / "config.json").read_text())["training"]["seed"] for s in (0, 1, 2)]
    assert trained == [0, 1, 2]
    values = [json.loads((out / f"seed-{s}" / "metrics.json").read_text())["test_accuracy"] for s in (0, 1, 2)]
    summary = seeds["summary"]["test_accuracy"]
    assert summary["values"] == values and summary["mean"] == pytest.approx(np.mean(values))
    assert summary["std"] == pytest.approx(np.std(values, ddof=1))


def test_report_command_and_plots(tiny_encoder: str, toy_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert cli_train(tiny_encoder, out, "--train", toy_files["train"], "--test", toy_files["test"], "--epochs", 2) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## Metrics" in text and "best_epoch" in text and "history.png" not in text  # none drawn yet
    assert "| neg |" in text
    assert main(["report", str(out), "--markdown", str(tmp_path / "report.md")]) == 0  # draws what it links
    assert capsys.readouterr().out == "" and "![history.png](model/history.png)" in (tmp_path / "report.md").read_text()
    assert (out / "history.png").stat().st_size > 1000 and (out / "confusion_matrix.png").stat().st_size > 1000
    assert main(["report", str(out)]) == 0 and "![history.png](history.png)" in capsys.readouterr().out


def test_lstm_only_epochs_run_on_head_threads(tiny_encoder: str, toy_data) -> None:
    """Training only an LSTM and a head on cached features uses `head_threads` (1), then gives the threads back;
    anything that runs the encoder keeps them all."""
    seen: list[int] = []
    torch.set_num_threads(2)
    try:
        for options in ({}, {"cache": False}, {"head_threads": None}, {"mode": "finetune"}, {"head_threads": 3}):
            clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False, **options)
            clf.fit(*toy_data, callbacks=[lambda row: seen.append(torch.get_num_threads())])
            assert torch.get_num_threads() == 2
        assert seen == [1, 2, 2, 2, 2]
    finally:
        torch.set_num_threads(1)  # as conftest set it
