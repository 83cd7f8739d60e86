"""Never lose a user's files, never run or fetch code from a model folder, never give a silent wrong answer.

Each test is a careless or hostile use that once deleted files, ran code, answered wrongly or dumped a
traceback; every failure must be one ``error:`` line, exit 2, with nothing the user had lost.
"""

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
import torch

from bertlstm import BertLSTMClassifier, BertLSTMError
from bertlstm.cli import main
from bertlstm.core.folders import output_lock
from bertlstm.core.model_folder import digests
from conftest import cli_train, copy_of, make_sentiment, one_error, train, write_csv


# --- data loss ---------------------------------------------------------------------------------------------
def test_output_folder_with_user_files_is_refused_even_with_overwrite(tiny_encoder, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "train.csv")
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    for overwrite in ([], ["--overwrite"]):
        assert train(tiny_encoder, mine, "--train", data, *overwrite) == 2
        one_error(capsys, "holds what bertlstm did not write (chapter1.tex)")
    assert (mine / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis", "train.csv"]  # nothing else created


def test_a_model_folder_or_an_empty_folder_is_replaced(tiny_encoder, tmp_path) -> None:
    data = write_csv(tmp_path / "train.csv")
    (tmp_path / "empty").mkdir()
    assert train(tiny_encoder, tmp_path / "empty", "--train", data) == 0
    assert train(tiny_encoder, tmp_path / "empty", "--train", data, "--seed", 1) == 0  # now a model folder
    assert json.loads((tmp_path / "empty" / "config.json").read_text())["training"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "train.csv"]  # no lock, temp or old folder


def test_working_folder_its_parents_and_input_folders_are_never_replaced(
    tiny_encoder, tmp_path, capsys, monkeypatch
) -> None:
    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    data = write_csv(work / "data" / "train.csv")
    monkeypatch.chdir(work)
    for output, message in (
        (".", "is the working folder"),
        ("..", "is the working folder or holds it"),
        (str(tmp_path), "holds it"),
        ("data", "which this command reads"),
    ):
        assert train(tiny_encoder, output, "--train", data, "--overwrite") == 2, output
        one_error(capsys, message)
    assert data.is_file() and sorted(p.name for p in work.iterdir()) == ["data"]


def test_an_existing_file_is_not_renamed_away(tiny_encoder, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "train.csv")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert train(tiny_encoder, notes, "--train", data) == 2
    one_error(capsys, "is an existing file")
    assert notes.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "train.csv"]


def test_cache_clear_refuses_a_folder_that_is_not_a_cache(tmp_path, capsys) -> None:
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "cat.jpg").write_bytes(b"\xff" * 100)
    assert main(["cache", "clear", "--cache-dir", str(home)]) == 2
    one_error(capsys, "is not a bertlstm feature cache", "photos")
    assert (home / "photos" / "cat.jpg").is_file()


def test_cache_clear_removes_entries_and_unfinished_builds_only(tiny_encoder, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    data = write_csv(tmp_path / "train.csv")
    assert train(tiny_encoder, tmp_path / "m", "--train", data, "--cache-dir", cache) == 0
    unfinished = cache / f".{'0' * 32}.tmp-abc"
    unfinished.mkdir()
    (unfinished / "features.bin").write_bytes(b"\0" * 2**20)
    capsys.readouterr()
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert "freed 1.0 MiB" in capsys.readouterr().out  # two tiny entries and the 1 MiB leftover
    assert [p.name for p in cache.iterdir()] == ["CACHEDIR.TAG"]


def test_predict_never_writes_over_its_input(model_dir, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "test.csv")
    before = data.read_bytes()
    for output in (data, tmp_path / "." / "test.csv"):
        assert main(["predict", "--model", str(model_dir), "--input", str(data), "--output", str(output)]) == 2
        one_error(capsys, "which this command reads")
    assert data.read_bytes() == before


def test_a_second_run_on_the_same_output_is_refused(tiny_encoder, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "train.csv")
    output = tmp_path / "model"
    with output_lock(output):  # as a first run holds it for its whole duration
        assert train(tiny_encoder, output, "--train", data) == 2
        one_error(capsys, "another bertlstm run", str(os.getpid()))
        assert not output.exists() and not (tmp_path / "model.checkpoint").exists()
    assert train(tiny_encoder, output, "--train", data) == 0  # released: the next run goes ahead


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--multi-label", "--threshold", "foo"], "--threshold must be a number or per-label, global, not 'foo'"),
        (["--metric", "micro_f1"], "--metric micro_f1 is for multi-label"),
        (["--test", "UNKNOWN"], "no row has a label the model knows"),
        (["--class-weight", "nan,1"], "--class-weight must be a finite number above 0, not nan"),
        (["--class-weight=-1,1"], "--class-weight must be a finite number above 0, not -1.0"),
        (
            ["--class-weight", "heavy"],
            "--class-weight must be balanced or a comma-separated list of numbers, not 'heavy'",
        ),
        (["--class-weight", "1,2,3"], "3 class weights for 2 classes"),
        (["--lr", "-0.001"], "--lr must be a finite number above 0"),
        (["--encoder-lr", "nan"], "--encoder-lr must be a finite number above 0"),
        (["--max-length", "1000"], "--max-length 1000 is beyond what encoder"),
        (["--seeds", "0,0"], "--seeds [0, 0] repeat a seed"),
        (["--seeds", "0,x"], "--seeds must be a comma-separated list of whole numbers, not '0,x'"),
    ],
)
def test_bad_options_fail_before_any_work(tiny_encoder, tmp_path, capsys, options, message) -> None:
    data = write_csv(tmp_path / "train.csv")
    if "UNKNOWN" in options:
        pd.DataFrame({"text": ["so good", "bad"], "label": ["maybe", "unsure"]}).to_csv(tmp_path / "t.csv", index=False)
        options = ["--test", str(tmp_path / "t.csv")]
    assert train(tiny_encoder, tmp_path / "out" / "model", "--train", data, *options) == 2
    assert "epoch" not in one_error(capsys, message)  # not one epoch ran
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["train.csv"] + (["t.csv"] if "--test" in options else [])
    )


def test_leftovers_of_a_killed_save_are_removed_by_the_next_run(tiny_encoder, tmp_path) -> None:
    data = write_csv(tmp_path / "train.csv")
    for leftover in (".model.tmp-k1ll3d", ".model.old-4242"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "model.safetensors").write_bytes(b"\0" * 1000)
    (tmp_path / ".other.tmp-xyz").mkdir()  # another output's: not ours to delete
    assert train(tiny_encoder, tmp_path / "model", "--train", data) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-xyz", "model", "train.csv"]


# --- code execution and network access from a model folder ---------------------------------------------------
def _rehash(folder: Path) -> None:
    """What a careful attacker does: make the recorded checksums match the tampered files."""
    meta = json.loads((folder / "config.json").read_text())
    meta["files"] = digests(folder)
    (folder / "config.json").write_text(json.dumps(meta))


def test_custom_code_in_a_model_folder_never_runs(model_dir, tmp_path) -> None:
    """An encoder whose type only its own code can build: transformers would ask whether to run that code."""
    folder = copy_of(model_dir, tmp_path)
    marker = tmp_path / "PWNED"
    (folder / "encoder" / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertModel, BertConfig, BertTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evil-bert'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
        "EvilTokenizer = BertTokenizerFast\n"
    )
    for name, edit in (
        (
            "config.json",
            {"model_type": "evil-bert", "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}},
        ),
        ("tokenizer_config.json", {"auto_map": {"AutoTokenizer": [None, "evil.EvilTokenizer"]}}),
    ):
        config = json.loads((folder / "encoder" / name).read_text())
        (folder / "encoder" / name).write_text(json.dumps({**config, **edit}))
    _rehash(folder)
    result = subprocess.run(
        [sys.executable, "-m", "bertlstm.cli", "predict", "--model", str(folder), "--text", "good film"],
        input="y\ny\ny\n",  # what a user answers to "Do you wish to run the custom code? [y/N]"
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not marker.exists(), "the model folder's code ran"
    *said, error = result.stderr.strip().splitlines()  # progress lines, then one error line
    assert result.returncode == 2 and any(line.startswith("loading the classification model") for line in said)
    assert error.startswith("error: could not load the encoder"), result.stderr


def test_a_folder_without_encoder_is_an_error_not_a_download(model_dir, tmp_path, capsys, monkeypatch) -> None:
    folder = copy_of(model_dir, tmp_path)
    shutil.rmtree(folder / "encoder")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the Hugging Face Hub was contacted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "has no encoder/ folder")


def test_pickled_encoder_weights_are_refused(model_dir, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    torch.save({"weights": torch.zeros(2)}, folder / "encoder" / "pytorch_model.bin")
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "pytorch_model.bin", "safetensors only")


def test_a_checkpoint_that_unpickles_objects_is_refused(tiny_encoder, tmp_path, capsys, monkeypatch) -> None:
    import argparse

    from bertlstm.core.training import Trainer

    data = write_csv(tmp_path / "train.csv")
    evaluate = Trainer.evaluate

    def stop_in_epoch_2(self, dataset):
        if len(self.history) == 1:
            raise KeyboardInterrupt
        return evaluate(self, dataset)

    monkeypatch.setattr(Trainer, "evaluate", stop_in_epoch_2)
    assert cli_train(tiny_encoder, tmp_path / "m", "--train", data, "--epochs", 2, "--checkpoint-minutes", 0) == 130
    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    optimizer = tmp_path / "m.checkpoint" / "state" / "optimizer.pt"
    torch.save({"state": argparse.Namespace(payload="not a tensor")}, optimizer)  # needs a full unpickler
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "m")]) == 2
    one_error(capsys, "cannot be resumed", "optimizer.pt holds objects other than tensors")


# --- silent wrong answers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("damaged", ["model.safetensors", "encoder/model.safetensors", "encoder/tokenizer.json"])
def test_flipped_bits_are_detected(model_dir, tmp_path, capsys, damaged) -> None:
    folder = copy_of(model_dir, tmp_path)
    blob = bytearray((folder / damaged).read_bytes())
    blob[-10] ^= 0x01  # one bit, deep in the data: the file still parses
    (folder / damaged).write_bytes(bytes(blob))
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, damaged, "damaged")


def test_a_missing_or_swapped_tokenizer_is_refused(model_dir, tmp_path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    (folder / "encoder" / "tokenizer.json").unlink()
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "tokenizer.json is missing")

    tokenizer = json.loads((model_dir / "encoder" / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {k: v for k, v in tokenizer["model"]["vocab"].items() if v < 5}  # 5 tokens left
    (folder / "encoder" / "tokenizer.json").write_text(json.dumps(tokenizer))
    _rehash(folder)  # even with matching checksums, it is not the tokenizer the model was trained with
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "not the tokenizer this model was trained with")


def test_a_diverging_run_stops_and_saves_nothing(tiny_encoder, tmp_path, capsys, monkeypatch) -> None:
    from bertlstm.tasks.classify.model import BertLSTMModel

    data = write_csv(tmp_path / "train.csv")
    monkeypatch.setattr(BertLSTMModel, "compute_loss", lambda self, logits, *a, **k: logits.sum() * float("nan"))
    assert train(tiny_encoder, tmp_path / "model", "--train", data) == 2
    one_error(capsys, "training diverged", "--lr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]


def test_non_finite_weights_are_never_saved(model_dir, tmp_path) -> None:
    clf = BertLSTMClassifier.from_pretrained(model_dir, device="cpu")
    with torch.no_grad():
        clf.model_.head.weight[0, 0] = float("nan")
    with pytest.raises(BertLSTMError, match="non-finite weights"):
        clf.save_pretrained(tmp_path / "nan-model")
    assert not (tmp_path / "nan-model").exists()


def test_numeric_labels_are_one_class_and_missing_like_labels_warn(tiny_encoder, tmp_path) -> None:
    texts, labels = make_sentiment(40, 1)
    numeric = [
        "1.0" if label == "pos" and i % 4 == 0 else ("1" if label == "pos" else "0") for i, label in enumerate(labels)
    ]
    with pytest.warns(UserWarning, match=r"numeric labels read as numbers: '1.0' as '1'"):
        clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False, device="cpu").fit(texts, numeric)
    assert clf.label_names == ["0", "1"]
    path = tmp_path / "nan.csv"
    pd.DataFrame({"text": texts, "label": ["NaN" if label == "neg" else label for label in labels]}).to_csv(path)
    from bertlstm import Labels
    from bertlstm.tasks.classify.data import load_labelled

    with pytest.warns(UserWarning, match="'NaN' look like missing values"):
        Labels.clean(load_labelled(path)[1], multi_label=False)


def test_resume_with_other_options_is_refused(tmp_path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path / "m"), "--epochs", "9", "--lr", "0.1"]) == 2
    one_error(capsys, "leave out --epochs, --lr")


# --- every failure is one error line --------------------------------------------------------------------------
def _edit_config(folder: Path, edit) -> None:
    meta = json.loads((folder / "config.json").read_text())
    edit(meta)
    (folder / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate-head", "damaged"),
        ("truncate-encoder", "damaged"),
        ("truncate-unchecked", "does not match config.json"),
        ("version-type", "format_version must be a whole number, not '2'"),
        ("unknown-key", "model: unknown setting(s) colour"),
        ("no-model-section", "the 'model' section is missing"),
        ("label-count", "does not match config.json"),
        ("not-json", "is not valid JSON"),
    ],
)
def test_damaged_folders_are_one_error_line(model_dir, tmp_path, capsys, damage, message) -> None:
    folder = copy_of(model_dir, tmp_path)
    if damage.startswith("truncate"):
        name = "encoder/model.safetensors" if damage == "truncate-encoder" else "model.safetensors"
        (folder / name).write_bytes((folder / name).read_bytes()[:100])
        if damage == "truncate-unchecked":  # as if written before checksums existed
            _edit_config(folder, lambda m: (m.pop("files"), m.update(format_version=1)))
    elif damage == "version-type":
        _edit_config(folder, lambda m: m.update(format_version="2"))
    elif damage == "unknown-key":
        _edit_config(folder, lambda m: m["model"].update(colour="blue"))
    elif damage == "no-model-section":
        _edit_config(folder, lambda m: m.pop("model"))
    elif damage == "label-count":
        _edit_config(folder, lambda m: m["labels"].update(names=["neg", "pos", "meh"]))
    else:
        (folder / "config.json").write_text("{not json")
    if damage == "truncate-unchecked":
        with pytest.warns(UserWarning, match="saved before checksums were recorded"):
            assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    else:
        assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, message)


def test_unwritable_outputs_are_one_error_line(model_dir, tiny_encoder, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "train.csv")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert train(tiny_encoder, blocker / "model", "--train", data) == 2
    one_error(capsys, "is a file, not a folder")
    assert main(["predict", "--model", str(model_dir), "--text", "x", "--output", str(tmp_path / "no" / "p.csv")]) == 2
    one_error(capsys, "does not exist")
    assert main(["report", str(model_dir), "--markdown", str(tmp_path / "no" / "r.md")]) == 2
    one_error(capsys, "--markdown", "r.md", "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tiny_encoder, tmp_path, capsys) -> None:
    data = write_csv(tmp_path / "train.csv")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert train(tiny_encoder, locked / "model", "--train", data) == 2
        one_error(capsys, "permission denied")
    finally:
        locked.chmod(0o755)


def test_messages_name_the_right_thing(model_dir, tiny_encoder, tmp_path, capsys) -> None:
    rows = pd.DataFrame({"text": ["good", "bad", "fine"], "label": ["pos", None, "pos"]})
    rows.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    assert train(tiny_encoder, tmp_path / "m", "--train", tmp_path / "d.jsonl") == 2
    one_error(capsys, "(file line 2)")  # JSON Lines have no header line
    rows.to_parquet(tmp_path / "d.parquet")
    assert train(tiny_encoder, tmp_path / "m", "--train", tmp_path / "d.parquet") == 2
    one_error(capsys, "(row 2)")
    assert train(tiny_encoder, tmp_path / "m", "--train", tmp_path) == 2
    one_error(capsys, "is a folder, not a data file")
    assert cli_train(str(model_dir), tmp_path / "m", "--train", write_csv(tmp_path / "t.csv")) == 2
    one_error(capsys, "is a bertlstm model folder, not an encoder", "encoder")


def test_float_labels_in_json_lines_are_numbers(tmp_path) -> None:
    from bertlstm.tasks.classify.data import load_labelled

    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, 0.0, 2.5]}).to_json(
        tmp_path / "d.jsonl", orient="records", lines=True
    )
    assert load_labelled(tmp_path / "d.jsonl")[1] == ["1", "0", "2.5"]


def test_saved_files_follow_the_umask(model_dir) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "encoder/model.safetensors"):
        assert (model_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert model_dir.stat().st_mode & 0o777 == 0o777 & ~umask


def test_predictions_are_unchanged_by_a_save_load_round_trip(model_dir, tmp_path) -> None:
    clf = BertLSTMClassifier.from_pretrained(model_dir, device="cpu")
    texts = make_sentiment(10, 7)[0]
    again = BertLSTMClassifier.from_pretrained(clf.save_pretrained(tmp_path / "again"), device="cpu")
    np.testing.assert_array_equal(again.predict_proba(texts), clf.predict_proba(texts))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_a_device_that_is_not_there_is_a_clear_error(model_dir, capsys) -> None:
    with pytest.raises(BertLSTMError, match="no CUDA GPU is available"):
        BertLSTMClassifier.from_pretrained(model_dir, device="cuda")
    assert main(["predict", "--model", str(model_dir), "--text", "good", "--device", "cuda"]) == 2
    one_error(capsys, "no CUDA GPU is available")
