"""Round two of careless and hostile use (issue #21): what 200 commands still found, one test each.

Files lost, silent wrong answers, tracebacks and wrong exits, slow refusals and unbounded memory. Every
failure is one ``error:`` line with exit 2, before any work, with nothing the user had lost.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bertlstm import BertLSTMClassifier, BertLSTMError, Labels, open_model
from bertlstm.cli import main
from bertlstm.core.folders import output_lock
from conftest import copy_of, make_sentiment, one_error, train, write_csv


def cli(*args: str, stdin: str | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bertlstm.cli", *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )


# --- files lost -----------------------------------------------------------------------------------------------
def test_another_tools_folder_with_a_format_version_is_not_replaced(tiny_encoder, tmp_path, capsys) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"format_version": 1}))
    (other / "data.db").write_bytes(b"precious")
    for overwrite in ([], ["--overwrite"]):
        assert train(tiny_encoder, other, "--train", write_csv(tmp_path / "t.csv"), *overwrite) == 2
        one_error(capsys, "holds what bertlstm did not write (config.json, data.db)", "even with --overwrite")
    assert (other / "data.db").read_bytes() == b"precious"


def test_a_model_folder_with_the_users_own_files_is_not_replaced(model_dir, tiny_encoder, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    (folder / "NOTES.txt").write_text("my notes")
    for overwrite in ([], ["--overwrite"]):
        assert train(tiny_encoder, folder, "--train", write_csv(tmp_path / "t.csv"), *overwrite) == 2
        one_error(capsys, "a bertlstm model folder that also holds what bertlstm did not write (NOTES.txt)")
    assert (folder / "NOTES.txt").read_text() == "my notes"


def test_no_input_is_ever_inside_what_train_replaces(tiny_encoder, tmp_path, capsys) -> None:
    """Not the settings file, not the encoder folder: even with overwrite."""
    settings = tmp_path / "cfg"
    settings.mkdir()
    data = write_csv(tmp_path / "t.csv")
    run = {"output": str(settings), "overwrite": True, "data": {"train": str(data)}}
    (settings / "run.yaml").write_text(json.dumps(run))
    run_file = settings / "run.yaml"
    assert main(["train", "--config", str(run_file), "--encoder", tiny_encoder, "--epochs", "1", "--no-progress"]) == 2
    one_error(capsys, "run.yaml, which this command reads")
    assert run_file.is_file()
    encoder = Path(shutil.copytree(tiny_encoder, tmp_path / "encoder"))
    assert train(str(encoder), encoder, "--train", data, "--overwrite") == 2
    one_error(capsys, "which this command reads")
    assert (encoder / "config.json").is_file()


def test_predict_never_writes_into_the_model(model_dir, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    before = (folder / "config.json").read_bytes()
    assert main(["predict", "--model", str(folder), "--text", "good", "--output", str(folder / "config.json")]) == 2
    one_error(capsys, "which this command reads")
    assert main(["predict", "--model", str(folder), "--text", "good", "--output", str(folder / "new.csv")]) == 2
    one_error(capsys, "is inside")
    assert (folder / "config.json").read_bytes() == before and not (folder / "new.csv").exists()


def test_export_names_its_files_and_replaces_none_unless_told(model_dir, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    (tmp_path / "userdata.json").write_text("mine")
    target = tmp_path / "userdata.onnx"
    assert main(["export", "--model", str(model_dir), "--output", str(target)]) == 2
    one_error(capsys, "would replace", "userdata.json", "--overwrite")
    assert (tmp_path / "userdata.json").read_text() == "mine" and not target.exists()
    fresh = tmp_path / "fresh.onnx"
    assert main(["export", "--model", str(model_dir), "--output", str(fresh)]) == 0
    log = capsys.readouterr().err
    assert all(str(tmp_path / name) in log for name in ("fresh.onnx", "fresh.tokenizer.json", "fresh.json"))
    assert main(["export", "--model", str(model_dir), "--output", str(fresh)]) == 2  # an existing .onnx too
    one_error(capsys, "would replace", "fresh.onnx")
    assert main(["export", "--model", str(model_dir), "--output", str(fresh), "--overwrite"]) == 0


# --- silent wrong answers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["-5", "0"])
def test_a_batch_size_below_one_is_refused(model_dir, capsys, size: str) -> None:
    assert main(["predict", "--model", str(model_dir), "--text", "good", "--batch-size", size]) == 2
    one_error(capsys, "--batch-size must be a whole number of at least 1")
    with pytest.raises(BertLSTMError, match="at least 1"):
        open_model(model_dir, batch_size=int(size))


def edit_config(folder: Path, change) -> None:
    meta = json.loads((folder / "config.json").read_text())
    change(meta)
    (folder / "config.json").write_text(json.dumps(meta))


def test_repeated_label_names_are_refused(model_dir, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    edit_config(folder, lambda meta: meta["labels"].update(names=["neg", "neg"]))
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "config.json: labels: the label names repeat ('neg')")


@pytest.mark.parametrize("table", [{}, "partial"])
def test_an_empty_or_partial_checksum_table_is_damage(model_dir, tmp_path, capsys, table) -> None:
    folder = copy_of(model_dir, tmp_path)
    edit_config(folder, lambda meta: meta.update(files={} if table == {} else dict(list(meta["files"].items())[:2])))
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "does not list the checksum of")


def test_an_encoder_config_that_drops_weights_is_refused(model_dir, tmp_path, capsys) -> None:
    from bertlstm.core.model_folder import digests

    folder = copy_of(model_dir, tmp_path)
    encoder_config = folder / "encoder" / "config.json"
    config = json.loads(encoder_config.read_text())
    encoder_config.write_text(json.dumps({**config, "num_hidden_layers": 1}))
    edit_config(folder, lambda meta: meta.update(files=digests(folder)))  # the checksums made to agree
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "its config and its weights do not fit together (unexpected weights: ")


def test_numeric_labels_merge_whatever_else_the_column_holds() -> None:
    with pytest.warns(UserWarning):
        names = Labels.clean(["1", "1.0", "0", "NaN", 1.0], multi_label=False)
    assert names == ["1", "1", "0", "NaN", "1"] and len(set(names)) == 3


def test_classes_only_in_dev_are_named(tiny_encoder) -> None:
    """One example per class: the split leaves classes in dev that training never has (dev accuracy 0)."""
    texts = [f"text {i} good" for i in range(12)]
    labels = ["a", "b"] * 5 + ["rare1", "rare2"]
    with pytest.warns(UserWarning, match=r"class\(es\) occur in dev but never in the training data \('rare"):
        BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False, dev_fraction=0.5).fit(texts, labels)


def test_a_label_kind_that_does_not_fit_its_names_names_the_file(model_dir, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    edit_config(folder, lambda meta: meta["labels"].update(kind="int"))
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, str(folder / "config.json"), "kind int needs numeric names")


# --- tracebacks and wrong exits ------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gz_file_is_one_error_line(model_dir, tiny_encoder, tmp_path, capsys, damage) -> None:
    whole = gzip.compress(write_csv(tmp_path / "t.csv", n=400).read_bytes())
    data = tmp_path / "t.csv.gz"
    data.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else whole[:20] + b"\x00" * 200 + whole[220:])
    assert train(tiny_encoder, tmp_path / "m", "--train", data) == 2
    one_error(capsys, "t.csv.gz: could not read")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data)]) == 2
    one_error(capsys, "t.csv.gz: could not read")
    assert main(["predict", "--model", str(model_dir), "--input", str(data)]) == 2
    one_error(capsys, "t.csv.gz: could not read")


def test_a_max_length_past_the_encoders_positions_is_refused_on_load(model_dir, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    edit_config(folder, lambda meta: meta["model"].update(max_length=100_000))
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "config.json: model: --max-length 100000 is beyond what encoder")


def test_plots_stay_small_whatever_the_number_of_classes(tmp_path) -> None:
    """480 classes used to draw a 290-inch confusion matrix with 230,000 labels (killed at 23.6 GB)."""
    pytest.importorskip("matplotlib")
    from bertlstm.reports import MOST_CLASSES, plot_confusion, plot_per_label_f1

    names = [f"class-{i}" for i in range(480)]
    matrix = [[int(i == j) + int(j == (i + 1) % 480) for j in range(480)] for i in range(480)]
    start = time.perf_counter()
    plot_confusion({"labels": names, "confusion_matrix": matrix}, tmp_path / "c.png")
    per_label = {n: {"f1": i / 480, "support": 1} for i, n in enumerate(names)}
    plot_per_label_f1({"per_label": per_label, "macro_f1": 0.5}, tmp_path / "f.png")
    from matplotlib.image import imread

    assert time.perf_counter() - start < 60 and MOST_CLASSES <= 20
    assert max(imread(tmp_path / "c.png").shape[:2]) <= 100 * (0.6 * MOST_CLASSES + 2)
    assert max(imread(tmp_path / "f.png").shape[:2]) <= 100 * (0.28 * 2 * MOST_CLASSES + 1)


def test_a_bad_option_is_one_line_with_a_pointer_to_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "--help" in err


def test_an_unreachable_hub_fails_at_once_without_retry_lines(tmp_path) -> None:
    data = write_csv(tmp_path / "t.csv")
    start = time.perf_counter()
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    result = cli(
        "train", "--train", str(data), "--encoder", "nosuchorg/nosuchmodel", "--output", str(tmp_path / "m"), **env
    )
    assert result.returncode == 2 and "could not fetch encoder 'nosuchorg/nosuchmodel'" in result.stderr
    assert "Retrying" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - start < 60  # 25 s of retries before, plus start-up


# --- slow refusals and unbounded memory -------------------------------------------------------------------
def test_predict_checks_the_model_before_reading_stdin(tmp_path) -> None:
    """A missing model is said at once, though stdin never ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bertlstm.cli", "predict", "--model", str(tmp_path / "nope")],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        process.stdin.write("good\n" * 1000)  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        assert process.wait(timeout=60) == 2  # stdin is still open
        assert "error: model folder" in process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.kill()


def test_predictions_from_stdin_come_as_the_lines_do(model_dir) -> None:
    """Each line typed is answered before the next comes; memory holds a batch, not the stream."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bertlstm.cli", "predict", "--model", str(model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    answers: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [answers.put(line) for line in process.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        for text in ("good film", "awful plot"):
            process.stdin.write(text + "\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
            line = answers.get(timeout=120)
            if line.startswith("text,"):  # the header comes with the first answer
                line = answers.get(timeout=120)
            assert line.startswith(text + ","), line  # answered while stdin is still open
        process.stdin.close()  # type: ignore[union-attr]
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


def test_a_locked_output_is_refused_before_any_data_is_read(tiny_encoder, tmp_path, capsys, monkeypatch) -> None:
    def read(*args):
        raise AssertionError("the data was read before the lock was tried")

    monkeypatch.setattr("bertlstm.tasks.classify.data.read_run_data", read)
    with output_lock(tmp_path / "m"):
        assert train(tiny_encoder, tmp_path / "m", "--train", write_csv(tmp_path / "t.csv")) == 2
    one_error(capsys, "another bertlstm run")


def test_fp16_on_a_cpu_is_refused(tiny_encoder, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "t.csv")
    assert train(tiny_encoder, tmp_path / "m", "--train", data, "--mixed-precision", "fp16", "--device", "cpu") == 2
    one_error(capsys, "--mixed-precision fp16 needs a GPU")
    assert not (tmp_path / "m").exists()
    with pytest.raises(BertLSTMError, match="fp16 needs a GPU"):
        BertLSTMClassifier(encoder=tiny_encoder, mixed_precision="fp16", device="cpu").fit(*make_sentiment(20, 1))
