"""What a new user meets first: errors before anything heavy is imported, no third-party noise, progress on long
steps, the next steps after training, a report to open in a browser, and help texts that say what they mean."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bertlstm import open_model
from bertlstm.cli import main
from conftest import cli_train, one_error, write_csv

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens
HEAVY = ("torch", "transformers", "pandas", "fastapi", "matplotlib", "sklearn")


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


# --- check before importing ----------------------------------------------------------------------------
def test_every_command_refuses_bad_input_before_importing_torch(model_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv")
    pd.DataFrame({"text": ["good"]}).to_csv(tmp_path / "texts.csv", index=False)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    (tmp_path / "a-file").write_text("x")
    out, model, texts = str(tmp_path / "out"), str(model_dir), str(tmp_path / "texts.csv")
    cases = [
        ("file not found: nope.csv", ["train", "--train", "nope.csv", "--output", out]),
        ("no text column 'body'", ["train", "--train", str(data), "--text-column", "body", "--output", out]),
        ("which column holds the label", ["train", "--train", texts, "--output", out]),
        ("encoder folder /no/such/bert does not exist", ["train", "--train", str(data), "--encoder", "/no/such/bert"]),
        ("beyond what encoder minilm can read", ["train", "--train", str(data), "--max-length", "600"]),
        ("neither a local folder nor a Hugging Face hub id", ["train", "--train", str(data), "--encoder", "bert base"]),
        ("is a file, not a folder", ["train", "--train", str(data), "--output", str(tmp_path / "a-file" / "m")]),
        ("model folder nope does not exist", ["predict", "--model", "nope", "--text", "hi"]),
        ("texts.csv: no text column 'body'", ["predict", "--model", model, "--input", texts, "--text-column", "body"]),
        ("use a .csv", ["predict", "--model", model, "--text", "hi", "--output", str(tmp_path / "p.xlsx")]),
        ("which column holds the label", ["evaluate", "--model", model, "--data", texts]),
        ("name a .onnx file", ["export", "--model", model, "--output", str(tmp_path / "m.txt")]),
        ("cannot listen on 127.0.0.1", ["serve", "--model", model, "--port", str(busy.getsockname()[1])]),
        ("is not a model folder", ["report", str(tmp_path)]),
    ]
    for _, argv in cases[3:6]:
        argv += ["--output", out]
    code = """
        import contextlib, io, json, sys
        from bertlstm.cli import main
        results = []
        for argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                results.append([main(argv), err.getvalue()])
        print(json.dumps({"results": results, "imported": [m for m in sys.argv[2:] if m in sys.modules]}))
    """
    try:
        result = run_python(code, json.dumps([argv for _, argv in cases]), *HEAVY)
    finally:
        busy.close()
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    for (fragment, argv), (status, err) in zip(cases, answer["results"], strict=True):
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert status == 2 and len(errors) == 1 and fragment in errors[0], (argv, err)
    assert answer["imported"] == []  # nothing heavy was imported to say any of it


def test_a_missing_tensorboard_is_said_before_the_run_starts(tiny_encoder: str, tmp_path: Path, monkeypatch, capsys):
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else found(name))
    out = tmp_path / "m"
    code = cli_train(tiny_encoder, out, "--train", write_csv(tmp_path / "d.csv"), "--tensorboard", tmp_path / "tb")
    assert code == 2
    one_error(capsys, "needs the tensorboard package")
    assert not out.exists() and not (tmp_path / "m.checkpoint").exists()  # nothing left behind


# --- quiet dependencies --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [["--train", "hf:imdb"], ["--encoder", "bert-base-uncased"]],
    ids=["dataset", "encoder"],
)
def test_an_unreachable_hub_is_one_error_line(options: list[str], tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv")
    argv = ["-m", "bertlstm", "train", "--train", str(data), "--output", str(tmp_path / "m"), *options]
    env = {**os.environ, "HF_ENDPOINT": UNREACHABLE, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: could not fetch"), lines
    assert "Hub" in lines[0] or "hub" in lines[0]


def test_the_python_api_shows_no_third_party_bars(model_dir: Path, tmp_path: Path) -> None:
    """Loading and saving print nothing (transformers' "Loading weights" and "Writing model shards" bars)."""
    result = run_python(
        """
        import sys
        from bertlstm import BertLSTMClassifier
        clf = BertLSTMClassifier.from_pretrained(sys.argv[1], device="cpu")
        clf.save_pretrained(sys.argv[2])
        print(clf.predict(["good"])[0])
        """,
        str(model_dir),
        str(tmp_path / "again"),
    )
    assert result.returncode == 0 and result.stdout.strip() in ("pos", "neg"), result.stderr
    assert result.stderr == ""


def test_export_says_nothing_of_the_exporters_internals(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    output = tmp_path / "m.onnx"
    result = run_python(
        "import sys; from bertlstm.cli import main; sys.exit(main(sys.argv[1:]))",
        *("export", "--model", str(model_dir), "--output", str(output)),
    )
    assert result.returncode == 0 and output.is_file(), result.stderr[-3000:]
    noise = [
        line for line in result.stderr.splitlines() if re.search(r"warn|torchvision|onnxscript|\[torch", line, re.I)
    ]
    assert noise == []
    assert "loading the classification model" in result.stderr and "export (" in result.stderr  # progress, logged


# --- progress, next steps, the report --------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A run through the command line, as a user starts one; its output and what it printed."""
    folder = tmp_path_factory.mktemp("first-run")
    files = {name: write_csv(folder / f"{name}.csv", n, seed) for name, n, seed in (("train", 80, 1), ("test", 30, 3))}
    output = folder / "model"
    argv = ["-m", "bertlstm", "train", "--encoder", tiny_encoder, "--train", str(files["train"]), "--epochs", "2"]
    argv += ["--test", str(files["test"]), "--output", str(output), "--lstm-units", "8", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BERTLSTM_CACHE": str(folder / "cache")}
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"output": output, "stdout": result.stdout, "stderr": result.stderr, "cache": folder / "cache"}


def test_training_ends_with_the_next_commands_and_where_the_plots_are(run) -> None:
    out, model = run["stdout"], str(run["output"])
    for command in ("predict", "evaluate", "serve", "report"):
        assert f"bertlstm {command} --model {model}" in out or f"bertlstm {command} {model}" in out, out
    assert f"--html {model}/report.html" in out and "history.png" not in out  # plots: when asked for


def test_long_steps_say_that_they_are_under_way_when_not_on_a_terminal(run, tmp_path: Path, capsys) -> None:
    assert "feature pass over training texts (72 texts) ..." in run["stderr"]  # 10% of 80 held out for dev
    data = write_csv(tmp_path / "more.csv", n=30, seed=5)
    assert main(["evaluate", "--model", str(run["output"]), "--data", str(data), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "loading the classification model" in err and "evaluate more.csv (30 texts) ..." in err


def test_the_cache_says_what_its_entries_hold(run, capsys) -> None:
    assert main(["cache", "info", "--cache-dir", str(run["cache"])]) == 0
    text = capsys.readouterr().out
    assert "72 training texts: encoder" in text and "8 dev texts: encoder" in text


def test_report_html_is_one_page_with_every_section_and_its_images(run, tmp_path: Path, capsys) -> None:
    page = tmp_path / "report.html"
    assert main(["report", str(run["output"]), "--html", str(page)]) == 0
    assert capsys.readouterr().out == ""  # the page goes to its file only
    html = page.read_text()
    sections = ["Metrics", "Settings", "Per class (test)", "Confusion matrix (test)", "Training curves"]
    sections += ["Reliability (test)", "Most confidently wrong (dev)"]
    for section in sections:
        assert f"<h2>{section}</h2>" in html, section
    assert html.count('src="data:image/png;base64,') == 3  # confusion matrix, curves, reliability
    assert "expected calibration error" in html and "test_accuracy" in html and "model.lstm_units" in html
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []  # nothing to fetch: the page is whole
    errors = json.loads((run["output"] / "metrics.json").read_text())["dev"]["confident_errors"]
    assert errors, "the tiny model got every dev text right: the test shows no highlighted words"
    assert all(e["whole"] and "explanation" not in e for e in errors)  # training does not explain them ...
    shaded = re.findall(r'<span style="background: rgba\([^"]*\)" title="(-?[0-9.]+)">([^<]*)</span>', html)
    assert [word for _, word in shaded] == [w for e in errors for w in e["text"].split()]  # ... the page does
    predictor = open_model(run["output"], backend="torch", device="cpu")
    first = predictor.explain([errors[0]["text"]], label=errors[0]["predicted"])[0]["explanation"]
    assert [float(score) for score, _ in shaded[: len(first)]] == [round(w["score"], 4) for w in first]


def test_report_markdown_writes_only_its_file_with_links_that_resolve(run, tmp_path: Path, capsys) -> None:
    markdown = tmp_path / "elsewhere" / "summary.md"
    markdown.parent.mkdir()
    assert main(["report", str(run["output"]), "--markdown", str(markdown)]) == 0
    assert capsys.readouterr().out == ""
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown.read_text())
    assert links and all((markdown.parent / link).is_file() for link in links)


def test_a_hub_upload_keeps_no_dev_texts(run, tmp_path: Path) -> None:
    """``metrics.json`` quotes the dev texts the model got most wrong; what ``push_to_hub`` uploads does not."""
    from bertlstm import BertLSTMClassifier

    model = BertLSTMClassifier.from_pretrained(run["output"], device="cpu")
    assert model.metrics_["dev"]["confident_errors"]  # kept with the run
    model.save_pretrained(tmp_path / "upload", repo_id="user/model")  # what push_to_hub writes, then uploads
    uploaded = json.loads((tmp_path / "upload" / "metrics.json").read_text())
    assert "confident_errors" not in uploaded["dev"]
    assert uploaded["dev"]["accuracy"] == model.metrics_["dev"]["accuracy"]


def test_a_reader_that_stops_early_is_no_error(run, monkeypatch, capsys) -> None:
    """``bertlstm report --json | head``: the pipe closes before all is written."""
    read, write = os.pipe()
    os.close(read)
    with open(write, "w", buffering=1) as closed_pipe:  # each line is written at once, and fails at once
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        status = main(["report", str(run["output"]), "--json"])
        monkeypatch.undo()
    assert status == 0 and "error" not in capsys.readouterr().err


# --- help and settings ------------------------------------------------------------------------------------
def test_help_says_each_default_once(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the first of text, sentence, review, content, document)" in text
    assert not re.search(r"\(default: [^)]*\) \(default", text)


def test_dump_config_shows_what_encoder_lr_auto_comes_to(tmp_path: Path, capsys) -> None:
    data = write_csv(tmp_path / "d.csv")
    assert (
        main(["train", "--train", str(data), "--output", str(tmp_path / "m"), "--mode", "finetune", "--dump-config"])
        == 0
    )
    assert "encoder_lr: auto  # 5e-05 for this encoder\n" in capsys.readouterr().out  # minilm: 6 layers, 384 wide
