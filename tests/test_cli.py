"""The command line: train / predict / evaluate end to end, and one clear error line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bertlstm.cli import main
from conftest import cli_train


@pytest.fixture
def trained(tiny_encoder: str, toy_files: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "model"
    files = ["--train", toy_files["train"], "--dev", toy_files["dev"], "--test", toy_files["test"]]
    code = cli_train(tiny_encoder, out, *files, "--mode", "pooled", "--epochs", 2, "--lr", 0.01)
    assert code == 0
    return out


def test_train_writes_a_complete_folder(trained: Path) -> None:
    history = pd.read_csv(trained / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"train_loss", "dev_accuracy", "dev_macro_f1", "train_seconds", "eval_seconds", "examples_per_s"} <= set(
        history.columns
    )
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"best_epoch", "dev_accuracy", "test_accuracy", "test_macro_f1"} <= set(metrics)


def test_evaluate_json(trained: Path, toy_files: dict[str, Path], capsys) -> None:
    assert main(["evaluate", "--model", str(trained), "--data", str(toy_files["test"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "weighted_f1", "labels", "per_class", "confusion_matrix", "n"} <= set(report)
    assert report["n"] == 40 and report["labels"] == ["neg", "pos"]
    assert sum(map(sum, report["confusion_matrix"])) == 40
    assert main(["evaluate", "--model", str(trained), "--data", str(toy_files["test"])]) == 0
    tables = capsys.readouterr().out
    assert "accuracy" in tables and "confusion matrix" in tables and "neg" in tables


def test_predict_to_file_and_stdout(
    trained: Path, toy_files: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(trained), "--input", str(toy_files["test"]), "--output", str(out)]) == 0
    rows = pd.read_json(out, lines=True)
    # every input column is kept; the input has its own "label", so the predictions are "predicted_..."
    assert list(rows.columns) == ["text", "label", "predicted_label", "predicted_prob_neg", "predicted_prob_pos"]
    assert len(rows) == 40 and ((rows["predicted_prob_neg"] + rows["predicted_prob_pos"] - 1).abs() < 1e-4).all()

    assert main(["predict", "--model", str(trained), "--text", "good movie", "--text", "awful film"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "text,label,prob_neg,prob_pos" and len(lines) == 3

    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("so good\n\nbad plot\n"))
    assert main(["predict", "--model", str(trained)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("column", "no text column 'body'"),
        ("empty", "no rows"),
        ("blank_cell", "empty or non-text text"),
        ("one_class", "only one class"),
        ("encoding", "not valid UTF-8"),
        ("no_encoder", "encoder folder"),
    ],
)
def test_bad_input_is_one_clear_error_and_exit_2(
    tmp_path: Path, tiny_encoder: str, capsys, case: str, message: str
) -> None:
    train = {
        "missing": tmp_path / "nope.csv",
        "column": _write(tmp_path / "c.csv", "text,label\nok,a\nfine,b\n"),
        "empty": _write(tmp_path / "e.csv", "text,label\n"),
        "blank_cell": _write(tmp_path / "b.csv", "text,label\nok,a\n  ,b\n"),
        "one_class": _write(tmp_path / "o.csv", "text,label\nok,a\nfine,a\n"),
        "encoding": tmp_path / "enc.csv",
        "no_encoder": _write(tmp_path / "n.csv", "text,label\nok,a\nfine,b\nyes,a\nno,b\nup,a\ndown,b\n"),
    }[case]
    if case == "encoding":
        train.write_bytes("text,label\ncafé,a\nthé,b\n".encode("latin-1"))
    args = [
        "train",
        "--train",
        str(train),
        "--output",
        str(tmp_path / "m"),
        "--encoder",
        str(tmp_path / "no-such-folder") if case == "no_encoder" else tiny_encoder,
    ]
    if case == "column":
        args += ["--text-column", "body"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.checkpoint").exists()


def test_unseen_dev_label_warns_and_is_left_out(tiny_encoder: str, toy_files: dict[str, Path], tmp_path: Path) -> None:
    dev = pd.read_csv(toy_files["dev"])
    dev.loc[0, "label"] = "mixed"
    dev.to_csv(tmp_path / "dev2.csv", index=False)
    with pytest.warns(UserWarning, match=r"dev data: 1 row\(s\) have labels never seen in training \('mixed'\)"):
        code = main(
            [
                "train",
                "--train",
                str(toy_files["train"]),
                "--dev",
                str(tmp_path / "dev2.csv"),
                "--encoder",
                tiny_encoder,
                "--epochs",
                "1",
                "--output",
                str(tmp_path / "m"),
                "--no-progress",
            ]
        )
    assert code == 0
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["n_dev"] == 39


def test_unreachable_hub_id_is_a_clear_error(tmp_path: Path, toy_files: dict[str, Path]) -> None:
    """A real subprocess: exit code 2, one line on stderr, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertlstm.cli",
            "train",
            "--train",
            str(toy_files["train"]),
            "--encoder",
            "some-org/some-bert",
            "--output",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "could not fetch encoder 'some-org/some-bert'" in result.stderr and "as --encoder" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_help(capsys) -> None:
    for command in ("train", "predict", "evaluate"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
    assert "--lstm-units" in capsys.readouterr().out


def test_cache_info_and_clear(tiny_encoder: str, toy_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    args = [
        "train",
        "--train",
        str(toy_files["train"]),
        "--encoder",
        tiny_encoder,
        "--epochs",
        "1",
        "--no-progress",
        "--cache-dir",
        str(cache),
        "--output",
        str(tmp_path / "m"),
    ]
    assert main(args) == 0
    assert "feature cache: encoded" in capsys.readouterr().err
    assert main(args) == 0
    assert "feature cache: read" in capsys.readouterr().err  # the second run reads, never re-encodes
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    info = capsys.readouterr().out
    assert "2 entries" in info and "tokens" in info
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_version_and_json_output(trained: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("bertlstm 0.")
    assert main(["report", str(trained), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"]["names"] == ["neg", "pos"] and report["metrics"]["best_epoch"] >= 1
    assert len(report["history"]) == 2 and report["model"]["mode"] == "pooled"
    assert main(["cache", "info", "--json", "--cache-dir", str(tmp_path / "empty")]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == []


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_predictions_keep_the_input_columns_in_every_format(trained: Path, tmp_path: Path, suffix: str) -> None:
    texts = [f"good film number {i}" for i in range(30)]
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [f"doc-{i}" for i in range(30)], "body": texts}).to_csv(source, index=False)
    out = tmp_path / f"out{suffix}"
    args = ["predict", "--model", str(trained), "--input", str(source), "--text-column", "body", "--output", str(out)]
    assert main([*args, "--batch-size", "7"]) == 0
    if suffix == ".parquet":
        rows = pd.read_parquet(out)
    elif suffix == ".json":
        rows = pd.DataFrame(json.loads(out.read_text()))
    elif suffix == ".jsonl":
        rows = pd.read_json(out, lines=True)
    else:
        rows = pd.read_csv(out, sep="\t" if suffix == ".tsv" else ",")
    assert list(rows.columns) == ["id", "body", "label", "prob_neg", "prob_pos"]
    assert rows["id"].tolist() == [f"doc-{i}" for i in range(30)] and rows["body"].tolist() == texts


def test_without_matplotlib_the_plots_are_skipped(tiny_encoder: str, toy_files, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plots extra were not installed
    assert cli_train(tiny_encoder, tmp_path / "m", "--train", toy_files["train"], "--epochs", 1) == 0
    assert main(["report", str(tmp_path / "m"), "--plots"]) == 0
    assert "plots skipped" in capsys.readouterr().err
    assert (tmp_path / "m" / "model.safetensors").is_file() and not list((tmp_path / "m").glob("*.png"))


def test_threads_sets_torchs_cpu_threads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    try:
        assert main(["cache", "info", "--cache-dir", str(tmp_path), "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # as conftest set it
    assert main(["cache", "info", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --threads must be 1 or more, not 0"
