"""Distillation (issue #31): a student learns its teacher's answers on the tiny model, its teacher pass is cached
and resumes after a kill, its export answers as PyTorch, and every command takes it; bad settings are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from bertlstm import BertLSTMClassifier, BertLSTMTagger, LSTMStudent, open_model
from bertlstm.cli import main
from bertlstm.core.feature_cache import FeatureCache
from bertlstm.tasks.student.teacher import find_teacher, open_teacher, teacher_logits
from conftest import make_sentiment, make_tagged, one_error, write_csv

OPTIONS = {"lstm_units": 16, "epochs": 4, "lr": 1e-2, "progress": False, "device": "cpu"}
# The tiny random BERT's embedding table means nothing (random, std 0.02): kept frozen, as a student's are by
# default, it gives the LSTM nothing to tell words apart by, so the students here that must learn train it.
STUDENT = {**OPTIONS, "train_embeddings": True}


@pytest.fixture(scope="module")
def teacher(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier that has learnt the toy sentiment well (a BiLSTM over the tiny BERT)."""
    clf = BertLSTMClassifier(encoder=tiny_encoder, bidirectional=True, **OPTIONS)
    clf.fit(*make_sentiment(240, 1), *make_sentiment(40, 2))
    return clf.save_pretrained(tmp_path_factory.mktemp("teacher") / "model")


class Counting:
    """An engine that counts its batches."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, 0

    def __call__(self, batch):
        self.calls += 1
        return self.engine(batch)


def test_a_student_learns_its_teachers_answers(teacher: Path) -> None:
    student = LSTMStudent(teacher=str(teacher), augment=2, **STUDENT)
    student.fit(*make_sentiment(240, 1), *make_sentiment(40, 2))
    record = student.metrics_["teacher"]
    assert record["kind"] == "model folder" and record["dev_accuracy"] >= 0.8, record
    assert record["dev_agreement"] >= 0.85 and student.metrics_["dev_accuracy"] >= 0.8, (record, student.metrics_)
    assert student.metrics_["n_train"] > 240  # the training texts and their augmented copies
    texts = make_sentiment(20, 5)[0]
    taught = [answer["label"] for answer in open_model(teacher).answer(texts)]
    assert np.mean(student.predict(texts) == np.array(taught)) >= 0.8


def test_the_teacher_pass_is_kept_and_a_second_student_never_runs_the_teacher(teacher: Path) -> None:
    data = (*make_sentiment(120, 1), *make_sentiment(40, 2))
    predictor = open_teacher(find_teacher(str(teacher)))
    predictor.engine = counting = Counting(predictor.engine)
    LSTMStudent(teacher=str(teacher), augment=1, **OPTIONS).fit(*data, teacher_model=predictor)
    assert counting.calls > 0
    counting.calls = 0
    LSTMStudent(teacher=str(teacher), augment=1, **{**OPTIONS, "lstm_units": 8}).fit(*data, teacher_model=predictor)
    assert counting.calls == 0
    LSTMStudent(teacher=str(teacher), augment=1, cache=False, **OPTIONS).fit(*data, teacher_model=predictor)
    assert counting.calls > 0  # the cache turned off: the teacher scores the texts again


def test_a_killed_teacher_pass_resumes_where_it_stopped(teacher: Path, tmp_path: Path) -> None:
    texts = make_sentiment(200, 3)[0]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = f"""
import json, os, signal
from bertlstm.core.feature_cache import FeatureCache
from bertlstm.tasks.student.teacher import find_teacher, open_teacher, teacher_logits
teacher = find_teacher({str(teacher)!r})
predictor = open_teacher(teacher, "cpu")
engine, calls = predictor.engine, []
def dies(batch):  # kill -9 at the fourth batch, mid-pass
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return engine(batch)
predictor.engine = dies
texts = json.loads(open({str(tmp_path / "texts.json")!r}).read())
teacher_logits(teacher, predictor, texts, FeatureCache({str(tmp_path / "cache")!r}), 8, "texts")
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = list((tmp_path / "cache").glob(".*.partial"))
    assert len(partial) == 1 and len((partial[0] / "done.txt").read_text().split()) == 3  # 3 batches written
    found = find_teacher(str(teacher))
    predictor = open_teacher(found, "cpu")
    predictor.engine = counting = Counting(predictor.engine)
    logits = teacher_logits(found, predictor, texts, FeatureCache(tmp_path / "cache"), 8, "texts")
    assert counting.calls == 25 - 3  # 200 texts in batches of 8: only those not written before
    np.testing.assert_allclose(logits, predictor.logits(texts), atol=1e-5)
    assert not list((tmp_path / "cache").glob(".*.partial"))


def test_the_students_folder_and_export_answer_as_its_pytorch_model(teacher: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnx

    from bertlstm.deploy.export import export_onnx

    student = LSTMStudent(teacher=str(teacher), augment=1, **OPTIONS).fit(*make_sentiment(120, 1))
    folder = student.save_pretrained(tmp_path / "student")
    assert (folder / "tokenizer" / "tokenizer.json").is_file() and not (folder / "encoder").exists()
    with safe_open(folder / "model.safetensors", "pt") as stored:  # the frozen table in half the bytes
        assert stored.get_slice("embeddings.weight").get_dtype() == "F16"
        assert stored.get_slice("head.weight").get_dtype() == "F32"
    texts = make_sentiment(30, 7)[0] + ["good", "the plot was very boring and the actor was not good at all so sad"]
    in_memory = student.predict_proba(texts)
    np.testing.assert_allclose(open_model(folder, backend="torch").predict_proba(texts), in_memory, atol=1e-6)
    cached = open_model(folder)  # its cached graph
    assert cached.engine.kind == "onnx"
    np.testing.assert_allclose(cached.predict_proba(texts), in_memory, atol=1e-4)
    for quantize in (None, "int8"):
        path = export_onnx(folder, tmp_path / f"s-{quantize}.onnx", quantize=quantize)
        tolerance = 1e-4 if quantize is None else 0.1
        np.testing.assert_allclose(open_model(path).predict_proba(texts), in_memory, atol=tolerance)
        table = tuple(student.model_.embeddings.weight.shape)
        kinds = [t.data_type for t in onnx.load(str(path)).graph.initializer if tuple(t.dims) == table]
        assert kinds == [onnx.TensorProto.FLOAT16]  # the table in half there too, and no float32 copy beside it
    sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in (folder, teacher)}
    assert sizes[folder] < sizes[teacher]


def test_the_command_line_distils_and_every_command_takes_the_student(
    teacher: Path, tmp_path: Path, capsys, logs
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app

    train, dev = write_csv(tmp_path / "train.csv", 160, 1), write_csv(tmp_path / "dev.csv", 40, 2)
    unlabeled = tmp_path / "more.csv"
    pd.DataFrame({"text": make_sentiment(60, 9)[0]}).to_csv(unlabeled, index=False)
    argv = ["distill", "--teacher", str(teacher), "--train", str(train), "--dev", str(dev)]
    argv += ["--unlabeled", str(unlabeled), "--output", str(tmp_path / "s"), "--augment", "1", "--lstm-units", "16"]
    argv += ["--epochs", "3", "--lr", "0.01", "--train-embeddings"]
    assert main([*argv, "--no-progress", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["teacher"]["dev_agreement"] >= 0.8 and "60 texts without labels" in logs.text
    meta = json.loads((tmp_path / "s" / "config.json").read_text())
    assert meta["task"] == "student" and meta["model"]["teacher"] == str(teacher)
    logs.clear()
    argv = ["predict", "--model", str(tmp_path / "s"), "--text", "good film", "--explain"]
    assert main([*argv, "--explain-method", "occlusion"]) == 0
    assert "on onnxruntime" in logs.text  # its graph, exported as it was saved
    assert capsys.readouterr().out.splitlines()[0] == "text,label,prob_neg,prob_pos,explanation,explained"
    assert main(argv) == 0  # integrated gradients, on the student's own embeddings (PyTorch)
    assert "completeness" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "s"), "--data", str(dev), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.8
    assert main(["report", str(tmp_path / "s"), "--html", str(tmp_path / "report.html")]) == 0
    with TestClient(create_app(ServeConfig(model=str(tmp_path / "s"), max_wait_ms=0))) as client:
        described = client.get("/metadata").json()
        answer = client.post("/predict", json={"texts": ["good film"], "explain": True}).json()["predictions"][0]
    assert described["task"] == "student" and described["backend"] == "onnx" and described["teacher"]
    assert answer["label"] in ("neg", "pos") and answer["explanation"]


def test_bad_input_is_one_line_before_any_work(teacher: Path, tiny_encoder: str, tmp_path: Path, capsys) -> None:
    train = write_csv(tmp_path / "train.csv", 40, 1)
    tagger = BertLSTMTagger(encoder=tiny_encoder, epochs=1, progress=False).fit(*make_tagged(20, 1))
    tagger_folder = tagger.save_pretrained(tmp_path / "tagger")
    (tmp_path / "notexts.csv").write_text("body\nhello\n")
    base = ["distill", "--train", str(train), "--output", str(tmp_path / "s")]
    for extra, message in (
        ([], "a student needs its --teacher"),
        (["--teacher", str(tagger_folder)], "cannot teach a student: a tagger tags words"),
        (["--teacher", str(tmp_path / "nope")], "does not exist"),
        (["--teacher", str(teacher), "--lstm-units", "0"], "--lstm-units must be a whole number from 1"),
        (["--teacher", str(teacher), "--augment", "-1"], "--augment must be a whole number from 0"),
        (["--teacher", str(teacher), "--gold-weight", "2"], "--gold-weight must be a finite number"),
        (["--teacher", str(teacher), "--unlabeled", str(tmp_path / "notexts.csv")], "notexts.csv"),
        (["--teacher", str(teacher), "--class-weight", "balanced"], "--class-weight does not apply"),
    ):
        assert main([*base, *extra]) == 2, extra
        one_error(capsys, message)
    assert main(["distill", "--teacher", str(teacher), "--train", str(train), "--output", str(teacher)]) == 2
    one_error(capsys, "which this command reads")
    assert not (tmp_path / "s").exists() and (teacher / "config.json").is_file()


def test_an_export_or_a_multi_label_classifier_teaches_too(teacher: Path, tiny_encoder: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from bertlstm.deploy.export import export_onnx
    from conftest import make_multilabel

    graph = export_onnx(teacher, tmp_path / "teacher.onnx")
    student = LSTMStudent(teacher=str(graph), augment=1, **STUDENT).fit(*make_sentiment(160, 1))
    assert student.metrics_["teacher"]["kind"] == "export" and student.metrics_["teacher"]["dev_agreement"] >= 0.8
    texts, labels = make_multilabel(240, 1)
    multi = BertLSTMClassifier(encoder=tiny_encoder, multi_label=True, bidirectional=True, **OPTIONS)
    folder = multi.fit(texts, [label.split(",") for label in labels]).save_pretrained(tmp_path / "multi")
    student = LSTMStudent(teacher=str(folder), augment=1, loss="kl", gold_weight=0.5, **STUDENT)
    student.fit(texts, [label.split(",") for label in labels])
    assert student.labels_.multi_label and student.predict(texts[:5]).shape == (5, 3)
    assert student.metrics_["dev_macro_f1"] >= 0.7 and student.metrics_["teacher"]["dev_agreement"] >= 0.6
