"""Prediction and evaluation from files, for every task and every way a model comes: a model folder, an ONNX
export, a Hub repository. The task is read from the model's metadata once; nothing else is asked of the user."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bertlstm import BertLSTMClassifier, BertLSTMError, BertLSTMTagger
from bertlstm.cli import main
from bertlstm.deploy.checks import is_predictions_file
from bertlstm.deploy.config import EvaluateConfig, PredictConfig
from bertlstm.deploy.files import evaluate_file, predict_file, write
from bertlstm.tasks.registry import find_model
from conftest import make_sentiment, make_tagged, write_conll


@pytest.fixture(scope="module")
def folders(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small trained classifier and tagger, as model folders."""
    root = tmp_path_factory.mktemp("models")
    options = {"encoder": tiny_encoder, "epochs": 2, "progress": False, "device": "cpu"}
    clf = BertLSTMClassifier(**options, lstm_units=8, lr=1e-2).fit(*make_sentiment(120, 1))
    tagger = BertLSTMTagger(**options, lstm_units=8, crf=True, lr=1e-2).fit(*make_tagged(120, 0))
    return {"classifier": clf.save_pretrained(root / "clf"), "tagger": tagger.save_pretrained(root / "tagger")}


def hub_cache(folder: Path, cache: Path, repo: str) -> None:
    """What `hf download` leaves in the cache: refs/main naming a snapshot folder that holds the files."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / ("0" * 40))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0" * 40)


@pytest.fixture
def offline_hub(folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    for kind, folder in folders.items():
        hub_cache(folder, tmp_path / "hub", f"someone/tiny-{kind}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_a_hub_id_predicts_with_its_own_task(offline_hub: None, capsys: pytest.CaptureFixture) -> None:
    """A Hub id used to fail in predict ("does not exist"), and every Hub id counted as a classifier."""
    assert main(["predict", "--model", "someone/tiny-classifier", "--text", "good film"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "text,label,prob_neg,prob_pos"
    assert main(["predict", "--model", "someone/tiny-tagger", "--text", "the actor was in the scene story"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["text"] == "the actor was in the scene story" and isinstance(answer["entities"], list)
    assert find_model("someone/tiny-tagger").task.name == "tagging"


def test_tagger_predicts_conll_tokens_and_keeps_a_tables_columns(folders, tmp_path: Path) -> None:
    tokens, tags = make_tagged(12, 5)
    conll = write_conll(tmp_path / "in.conll", tokens, tags)
    out = tmp_path / "out.conll"
    assert predict_file(PredictConfig(model=str(folders["tagger"]), input=str(conll), output=str(out))) == 12
    blocks = out.read_text().split("\n\n")
    assert blocks[0] == "-DOCSTART-\tO" and len(blocks) == 13
    assert [line.split("\t")[0] for line in blocks[1].splitlines()] == tokens[0]
    table = tmp_path / "texts.csv"
    pd.DataFrame({"id": ["a", "b"], "text": ["the actor", "a scene story"]}).to_csv(table, index=False)
    predict_file(PredictConfig(model=str(folders["tagger"]), input=str(table), output=str(tmp_path / "o.jsonl")))
    rows = pd.read_json(tmp_path / "o.jsonl", lines=True)
    assert list(rows.columns) == ["id", "text", "entities"] and rows["id"].tolist() == ["a", "b"]
    with pytest.raises(BertLSTMError, match="use a .jsonl, .json file name"):
        predict_file(PredictConfig(model=str(folders["tagger"]), input=str(table), output=str(tmp_path / "o.conll")))


@pytest.mark.parametrize("kind", ["classifier", "tagger"])
def test_evaluate_takes_whatever_predict_takes(folders, tmp_path: Path, kind: str) -> None:
    """A folder and its .onnx export give the same report (evaluate used to say an .onnx "is a file")."""
    pytest.importorskip("onnxruntime")
    from bertlstm.deploy.export import export_onnx

    if kind == "classifier":
        data = tmp_path / "test.csv"
        pd.DataFrame(dict(zip(("text", "label"), make_sentiment(40, 3), strict=True))).to_csv(data, index=False)
    else:
        data = write_conll(tmp_path / "test.conll", *make_tagged(40, 3))
    graph = export_onnx(folders[kind], tmp_path / "model.onnx")
    folder_report, tables = evaluate_file(EvaluateConfig(model=str(folders[kind]), data=str(data)))
    onnx_report, _ = evaluate_file(EvaluateConfig(model=str(graph), data=str(data)))
    key = "accuracy"
    assert onnx_report[key] == pytest.approx(folder_report[key]) and onnx_report["n"] == folder_report["n"] == 40
    assert ("entity micro-F1" if kind == "tagger" else "confusion matrix") in tables
    assert main(["evaluate", "--model", str(graph), "--data", str(data), "--json"]) == 0


def test_evaluate_warns_about_and_leaves_out_tags_never_seen_in_training(folders, tmp_path: Path) -> None:
    """One rule for labels never seen in training, as for a classifier's (it used to be an error here)."""
    tokens, tags = make_tagged(20, 3)
    tags[0][0] = "B-ORG"  # an entity type training never saw
    data = write_conll(tmp_path / "test.conll", tokens, tags)
    with pytest.warns(UserWarning, match=r"1 sentence\(s\) have tags never seen in training \('B-ORG'"):
        report, _ = evaluate_file(EvaluateConfig(model=str(folders["tagger"]), data=str(data)))
    assert report["n"] == 19


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_an_exported_tagger_has_a_dynamic_word_axis_and_runs_without_warnings(
    folders, tmp_path: Path, capfd: pytest.CaptureFixture, quantize: str | None
) -> None:
    """The emissions used to be declared (sentences, 18, tags): onnxruntime warned at every other length."""
    onnx = pytest.importorskip("onnx")
    from bertlstm import open_model
    from bertlstm.deploy.export import export_onnx
    from bertlstm.tasks.tag.data import Sentence

    path = export_onnx(folders["tagger"], tmp_path / "tagger.onnx", quantize)
    dims = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["sentences", "words", 4]  # O, B-LOC, I-LOC, B-PER
    capfd.readouterr()
    tagged = open_model(path).predict_tags([Sentence(["the", "actor"] * n) for n in (1, 7, 30)])
    assert [len(t) for t in tagged] == [2, 14, 60]
    assert "VerifyOutputSizes" not in capfd.readouterr().err


def test_how_a_file_is_read_is_the_models_tasks_own_setting(folders, tmp_path: Path, capsys) -> None:
    """predict and evaluate take every task's data settings (generated, not written twice); the model's task
    reads its own, and one that only another task has is an error, not silently ignored."""
    table = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2], "body": ["good film", "awful plot"]}).to_csv(table, index=False)
    args = ["predict", "--model", str(folders["classifier"]), "--input", str(table)]
    assert main([*args, "--text-column", "body"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "id,body,label,prob_neg,prob_pos"
    assert main([*args, "--tag-column", "2"]) == 2
    assert "error: --tag-column is not a setting of a classification model's data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    shown = capsys.readouterr().out
    assert all(option in shown for option in ("--label-column", "--tag-scheme", "--text-column"))


@pytest.mark.parametrize("kind", ["jsonl", "json"])  # a tagger writes texts' entities in these alone
def test_a_taggers_output_is_told_from_a_users_annotated_texts(folders, tmp_path: Path, kind: str, capsys) -> None:
    """An `entities` column alone used to mark a file as predictions: a user's spaCy-style annotations named as
    the output were replaced. Now what the entities hold decides: a tagger's (text, type, start, end) are
    replaced, a user's own kinds of entities are not, nor a file whose entities are all empty (nothing tells)."""
    theirs = [{"text": "Ada", "type": "PER", "start": 0, "end": 3}]
    rows = {"id": ["a", "b"], "text": ["Ada wrote", "nothing"], "entities": [theirs, []]}
    out = tmp_path / f"out.{kind}"
    write(iter([pd.DataFrame(rows)]), out, kind)
    assert is_predictions_file(out)  # what a tagger's predict writes, in every format
    for name, entities in (
        ("spacy", [[[0, 3, "PER"]], []]),
        ("labelled", [[{"start": 0, "end": 3, "label": "PER"}], []]),
        ("empty", [[], []]),
    ):
        mine = tmp_path / f"{name}.{kind}"
        write(iter([pd.DataFrame({**rows, "entities": entities})]), mine, kind)
        assert not is_predictions_file(mine), name
    before = mine.read_bytes()
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["the actor was in the scene story"]}).to_csv(texts, index=False)
    assert main(["predict", "--model", str(folders["tagger"]), "--input", str(texts), "--output", str(mine)]) == 2
    assert "is not a predictions file bertlstm wrote" in capsys.readouterr().err
    assert mine.read_bytes() == before
