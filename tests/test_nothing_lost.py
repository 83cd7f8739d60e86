"""Round three of hostile use (issue #30): nothing of the user's is ever deleted or replaced, whatever an output
names and with ``--overwrite`` given; every answer of the default engine is the model folder's; one bad request
fails only itself; and the smaller defects of that round.

Every test that points a command at a "home" builds it in ``tmp_path`` and sets ``HOME`` to it: no test here ever
aims at a real folder of the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from bertlstm import BertLSTMClassifier, BertLSTMError, Labels
from bertlstm.cli import main
from bertlstm.core.folders import atomic_folder, foreign_entries, hold
from bertlstm.deploy.export import export_onnx
from conftest import copy_of, make_sentiment, one_error, train, write_csv


# --- a home folder, and a hash of everything in it ---------------------------------------------------------------
def fake_home(root: Path) -> dict[str, Path]:
    """A home as a user has one: dotfiles, an SSH key, a virtual environment, a git repository, a file of their
    own, and the caches bertlstm and Hugging Face use."""
    home = root / "home"
    files = {
        ".bashrc": "export PATH=$HOME/bin:$PATH\n",
        ".gitconfig": "[user]\n  name = Someone\n",
        ".ssh/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n",
        ".ssh/known_hosts": "example.org ssh-ed25519 AAAA\n",
        "venv/pyvenv.cfg": "home = /usr/bin\n",
        "venv/bin/activate": "# activate\n",
        "repo/.git/HEAD": "ref: refs/heads/main\n",
        "repo/README.md": "# my project\n",
        "notes.txt": "my notes\n",
        "data.csv": "text,label\nhello,greeting\n",
        "mine.onnx": "not a bertlstm graph",
        "mine.json": '{"mine": true}\n',
        ".cache/huggingface/hub/version.txt": "1\n",
        ".cache/bertlstm/features/CACHEDIR.TAG": "Signature: 8a477f597d28d172789f06886806bc55\n",
        ".cache/bertlstm/graphs/readme.txt": "graphs\n",
    }
    for name, text in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    (home / ".ssh").chmod(0o700)
    return {
        "home": home,
        ".ssh": home / ".ssh",
        "venv": home / "venv",
        "repo": home / "repo",
        "cache": home / ".cache",
        "hf": home / ".cache" / "huggingface",
        "bertlstm caches": home / ".cache" / "bertlstm",
        "features": home / ".cache" / "bertlstm" / "features",
        "graphs": home / ".cache" / "bertlstm" / "graphs",
    }


def tree_hash(root: Path) -> str:
    """Every path under ``root`` (links not followed) with its kind, mode and content."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        h.update(f"{path.relative_to(root)}|{stat.st_mode}|".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    folders = fake_home(tmp_path)
    monkeypatch.setenv("HOME", str(folders["home"]))
    for name in ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "BERTLSTM_CACHE", "BERTLSTM_GRAPHS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return folders


TARGETS = ["home", ".ssh", "venv", "repo", "cache", "hf", "bertlstm caches", "features", "graphs"]


@pytest.mark.parametrize("target", TARGETS)
def test_train_with_overwrite_never_replaces_a_folder_of_the_users(
    tiny_encoder: str, home: dict[str, Path], tmp_path: Path, capsys, target: str
) -> None:
    data = write_csv(tmp_path / "train.csv")
    before = tree_hash(home["home"])
    assert train(tiny_encoder, home[target], "--train", data, "--overwrite") == 2
    one_error(capsys)
    assert train(tiny_encoder, home[target], "--train", data, "--seeds", "0,1") == 2
    one_error(capsys)
    cache = str(tmp_path / "features")  # the training's own cache, outside the home of this test
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, lstm_units=8, progress=False, cache_dir=cache)
    with pytest.raises(BertLSTMError):
        clf.fit(*make_sentiment(40, 1)).save_pretrained(home[target], overwrite=True)
    assert tree_hash(home["home"]) == before


def test_the_messages_say_why_a_folder_is_never_an_output(
    tiny_encoder: str, home: dict[str, Path], tmp_path: Path, capsys
) -> None:
    data = write_csv(tmp_path / "train.csv")
    for target, why in (
        ("home", "is your home folder"),
        ("venv", "is a Python environment"),
        ("repo", "is a git work tree"),
        ("hf", "is the Hugging Face cache"),
        ("bertlstm caches", "holds the feature cache"),
    ):
        assert train(tiny_encoder, home[target], "--train", data, "--overwrite") == 2
        one_error(capsys, why, "never writes over it")
    (home["home"] / "empty").mkdir()
    (home["home"] / "empty" / ".keep").write_text("")
    assert train(tiny_encoder, home["home"] / "empty", "--train", data, "--overwrite") == 2
    one_error(capsys, "what bertlstm did not write (.keep)", "even with --overwrite")


def test_files_of_the_users_are_never_replaced_by_any_command(
    model_dir: Path, home: dict[str, Path], tmp_path: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime")
    data = write_csv(tmp_path / "test.csv")
    h = home["home"]
    (h / "scores.csv").write_text("text,prob_annotator\nfine,0.9\n")  # the user's own, with a prob_ column
    before = tree_hash(h)
    model = str(model_dir)
    for argv in (
        ["predict", "--model", model, "--text", "good", "--output", str(h / "data.csv")],
        ["predict", "--model", model, "--text", "good", "--output", str(h / "scores.csv")],
        ["predict", "--model", model, "--text", "good", "--output", str(h)],
        ["predict", "--model", model, "--text", "good", "--output", str(h / ".ssh")],
        ["export", "--model", model, "--output", str(h / "mine.onnx"), "--overwrite"],
        ["export", "--model", model, "--output", str(h), "--overwrite"],
        ["report", model, "--markdown", str(h / "notes.txt")],
        ["report", model, "--html", str(h / ".gitconfig")],
        ["report", model, "--html", str(h / ".ssh")],
        ["cache", "clear", "--cache-dir", str(h)],
        ["train", "--train", str(data), "--output", str(h / "notes.txt"), "--overwrite"],
    ):
        assert main(argv) == 2, argv
        one_error(capsys)
    assert tree_hash(h) == before


def test_bertlstm_replaces_its_own_outputs(model_dir: Path, tiny_encoder: str, tmp_path: Path, capsys) -> None:
    """What it wrote it may write again: predictions, reports (also inside a model folder it retrains), exports."""
    pytest.importorskip("onnxruntime")
    folder = copy_of(model_dir, tmp_path)
    out = tmp_path / "predictions.csv"
    for _ in range(2):
        assert main(["predict", "--model", str(folder), "--text", "good", "--output", str(out)]) == 0
    assert main(["report", str(folder), "--html", str(folder / "report.html")]) == 0
    assert main(["report", str(folder), "--markdown", str(folder / "report.md")]) == 0
    assert main(["report", str(folder), "--markdown", str(folder / "report.md")]) == 0  # its own: replaced
    data = write_csv(tmp_path / "train.csv")
    assert train(tiny_encoder, folder, "--train", data) == 0  # the reports are bertlstm's: the folder is replaced
    assert not (folder / "report.html").exists() and (folder / "config.json").is_file()
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(folder), "--output", str(onnx)]) == 0
    assert main(["export", "--model", str(folder), "--output", str(onnx)]) == 2
    one_error(capsys, "would replace", "--overwrite")
    assert main(["export", "--model", str(folder), "--output", str(onnx), "--overwrite"]) == 0


def test_a_checkpoint_folder_of_the_users_is_not_taken_for_a_runs(tiny_encoder: str, tmp_path: Path, capsys) -> None:
    data = write_csv(tmp_path / "train.csv")
    mine = tmp_path / "model.checkpoint"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert train(tiny_encoder, tmp_path / "model", "--train", data) == 2
    one_error(capsys, "model.checkpoint holds what bertlstm did not write")
    assert (mine / "thesis.tex").read_text() == "precious" and not (tmp_path / "model").exists()


def test_files_that_appear_in_the_output_during_a_run_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(BertLSTMError, match="came to hold what bertlstm did not write"):
        with atomic_folder(target, foreign=foreign_entries) as tmp:
            (tmp / "config.json").write_text('{"new": true}')
            (target / "NOTES.txt").write_text("written while the run went on")
    assert (target / "NOTES.txt").is_file() and (target / "config.json").read_text() == "{}"
    saved = [p for p in tmp_path.iterdir() if p.name.startswith("model-")]
    assert len(saved) == 1 and (saved[0] / "config.json").read_text() == '{"new": true}'


# --- leftovers and live builds -------------------------------------------------------------------------------
def test_an_export_killed_midway_leaves_nothing_the_next_one_keeps(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    leftover = tmp_path / ".m.onnx.tmp-killed"
    leftover.mkdir()
    (leftover / "main.fp32.onnx").write_bytes(b"half a graph")
    export_onnx(model_dir, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx", "m.tokenizer.json"]


def test_cache_clear_leaves_a_build_that_another_run_holds(tmp_path: Path, capsys, logs) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    live, dead = cache / f".{'1' * 32}.tmp-live", cache / f".{'2' * 32}.tmp-dead"
    for folder in (live, dead):
        folder.mkdir()
        (folder / "features.bin").write_bytes(b"\0" * 1024)
    with hold(live):  # as a run's feature pass holds its entry while it builds it
        assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert live.is_dir() and not dead.exists()
    assert "another run is building" in logs.text


# --- smaller defects -------------------------------------------------------------------------------------------
def test_labels_are_normalised_and_a_merge_is_said(tiny_encoder: str, tmp_path: Path) -> None:
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    texts, _ = make_sentiment(40, 1)
    labels = [[composed, decomposed, "food", "food "][i % 4] for i in range(40)]
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, lstm_units=8, progress=False)
    with pytest.warns(UserWarning, match="spelled differently are one class"):
        clf.fit(texts, labels)
    assert list(clf.classes_) == ["café", "food"]
    with pytest.raises(BertLSTMError, match="missing or empty"):
        BertLSTMClassifier(encoder=tiny_encoder, epochs=1, progress=False).fit(texts, [float("nan"), *labels[1:]])
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    from bertlstm.tasks.classify.data import load_labelled

    with pytest.warns(UserWarning, match="'food' and 'food ' as 'food'"):
        assert set(Labels.clean(load_labelled(path)[1], False)) == {"café", "food"}


def test_an_edited_lstm_setting_names_the_heads_weights(model_dir: Path, tmp_path: Path, capsys) -> None:
    folder = copy_of(model_dir, tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["lstm_layers"] = 2
    (folder / "config.json").write_text(json.dumps(meta))
    assert main(["predict", "--model", str(folder), "--text", "good", "--backend", "torch"]) == 2
    one_error(capsys, "the head's weights do not fit its settings (missing ", "_l1")


def test_explain_options_are_checked_before_the_model_loads(model_dir: Path, capsys, logs) -> None:
    assert main(["predict", "--model", str(model_dir), "--text", "good", "--explain-label", "pos"]) == 2
    one_error(capsys, "--explain-label", "needs --explain")
    argv = ["predict", "--model", str(model_dir), "--text", "good", "--explain", "--explain-label", "food"]
    assert main(argv) == 2
    one_error(capsys, "'food' is not a label of this model: neg, pos")
    assert "loading" not in logs.text


def test_cache_info_names_what_is_wrong_at_once(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junkcache"
    (junk / ("a" * 32)).mkdir(parents=True)
    (junk / ("a" * 32) / "meta.json").write_text("not json")
    assert main(["cache", "info", "--cache-dir", str(junk)]) == 0
    assert "0 entries" in capsys.readouterr().out
    assert main(["cache", "info", "--cache-dir", str(write_csv(tmp_path / "train.csv"))]) == 2
    one_error(capsys, "is a file, not a feature cache folder")


# --- one request's input fails that request alone ------------------------------------------------------------------
def test_a_lone_surrogate_is_a_422_for_its_request_and_the_batch_goes_on(model_dir: Path) -> None:
    """The real model on the default engine, its requests batched together: a text that cannot be tokenized is
    refused alone, and the six valid requests sent with it are answered."""
    pytest.importorskip("fastapi")
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app

    with TestClient(create_app(ServeConfig(model=str(model_dir), max_wait_ms=200))) as client:
        bodies = ['{"texts": ["\\ud800 x"]}'] + [json.dumps({"texts": [text]}) for text in make_sentiment(6, 3)[0]]
        headers = {"Content-Type": "application/json"}
        with ThreadPoolExecutor(7) as pool:
            answers = list(pool.map(lambda body: client.post("/predict", content=body, headers=headers), bodies))
    assert answers[0].status_code == 422 and "not valid Unicode" in answers[0].json()["detail"]
    assert [a.status_code for a in answers[1:]] == [200] * 6


class OneBadText:
    """A back end whose forward pass fails on a batch that holds one particular text."""

    def answer(self, texts: list[str]) -> list[dict]:
        if "poison" in texts:
            raise TypeError("TextInputSequence must be str")
        return [{"label": "pos", "probabilities": {"neg": 0.25, "pos": 0.75}} for _ in texts]

    def metadata(self) -> dict:
        return {"backend": "test"}


def test_a_failing_request_never_fails_the_others_batched_with_it() -> None:
    pytest.importorskip("fastapi")
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app

    settings = ServeConfig(model="unused", max_wait_ms=300)
    with TestClient(create_app(settings, predictor=OneBadText())) as client:  # type: ignore[arg-type]
        texts = ["poison", *[f"fine {i}" for i in range(6)]]
        with ThreadPoolExecutor(7) as pool:
            answers = list(pool.map(lambda text: client.post("/predict", json={"texts": [text]}), texts))
        stats = client.get("/health").json()
    assert answers[0].status_code == 500 and [a.status_code for a in answers[1:]] == [200] * 6
    assert stats["forward_passes"] >= 1 and stats["texts"] == 6


# --- what a page shows is never run --------------------------------------------------------------------------------
def test_label_names_and_texts_are_escaped_in_markdown_and_the_model_card(tiny_encoder: str, tmp_path: Path) -> None:
    texts, labels = make_sentiment(40, 1)
    evil = {"pos": "<script>alert(1)</script>", "neg": "<img src=x onerror=alert(2)>|x"}
    clf = BertLSTMClassifier(encoder=tiny_encoder, epochs=1, lstm_units=8, progress=False)
    folder = clf.fit(texts, [evil[label] for label in labels]).save_pretrained(tmp_path / "model")
    assert main(["report", str(folder), "--markdown", str(tmp_path / "report.md")]) == 0
    for page in ((tmp_path / "report.md").read_text(), (folder / "README.md").read_text().split("---", 2)[2]):
        assert "<script>" not in page and "<img" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "\\|x" in page
