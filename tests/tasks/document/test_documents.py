"""Long documents (``long_text`` chunks): windows, the model's masking, the cache, partial fine-tuning, the
two-halves prediction and its export, and the settings that select the task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bertlstm import (
    BertLSTMDocumentClassifier,
    BertLSTMError,
    DocumentConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    open_model,
)
from bertlstm.core.encoders import load_encoder
from bertlstm.core.feature_cache import model_features
from bertlstm.core.inference import as_tensors, predict_logits
from bertlstm.tasks.classify.data import TextCut
from bertlstm.tasks.document.model import BertLSTMDocumentModel
from bertlstm.tasks.document.windows import DocumentDataset, Windows, first_and_last
from conftest import NEGATIVE, POSITIVE, WORDS

OPTIONS = {"max_length": 32, "chunk_length": 12, "lstm_units": 8, "progress": False, "device": "cpu"}


def make_documents(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Long toy reviews (36–96 words): the label is set by six cue words that come only at the end."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        filler = [rng.choice(WORDS[16:]) for _ in range(rng.randint(30, 90))]
        cues = [rng.choice(POSITIVE if label == "pos" else NEGATIVE) for _ in range(6)]
        texts.append(" ".join(filler + cues))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def trained(tiny_encoder: str) -> BertLSTMDocumentClassifier:
    clf = BertLSTMDocumentClassifier(encoder=tiny_encoder, epochs=4, lr=1e-2, bidirectional=True, **OPTIONS)
    return clf.fit(*make_documents(120, 1))


def test_windows_cover_every_piece_and_share_the_stride() -> None:
    cut = Windows(length=7, stride=2, cls_id=1, sep_id=2)  # 5 pieces a window
    windows = cut(list(range(100, 113)))  # 13 pieces
    assert windows == [
        [1, 100, 101, 102, 103, 104, 2],
        [1, 103, 104, 105, 106, 107, 2],
        [1, 106, 107, 108, 109, 110, 2],
        [1, 109, 110, 111, 112, 2],
    ]
    assert cut([]) == [[1, 2]] and Windows(7, 0, 1, 2)(list(range(5))) == [[1, 0, 1, 2, 3, 4, 2]]
    assert first_and_last([[i] for i in range(10)], 3) == [[0], [1], [9]] and len(first_and_last([[0]], 3)) == 1


def test_head_tail_keeps_the_first_quarter_and_the_end() -> None:
    ids = [101, *range(1000), 102]  # [CLS] 1000 pieces [SEP]
    kept = TextCut(512, "head-tail").head_tail(ids)
    assert len(kept) == 512 and kept[:129] == ids[:129] and kept[129:] == ids[-383:]
    assert TextCut(512, "head-tail").head_tail(ids[:300]) == ids[:300]


def test_the_settings_select_the_documents_task() -> None:
    run = RunConfig.from_dict({"model": {"long_text": "chunks", "chunk_length": 64}})
    assert isinstance(run.model, DocumentConfig) and run.task_spec.name == "documents"
    assert RunConfig.from_dict(run.to_dict()) == run
    with pytest.raises(BertLSTMError, match="as the documents task"):
        ModelConfig(long_text="chunks")  # the classifier's own model reads truncate and head-tail only
    with pytest.raises(BertLSTMError, match="`chunk_length` 200 is longer than `max_length` 128"):
        DocumentConfig(chunk_length=200)


def test_a_document_reads_the_same_alone_or_beside_longer_ones(trained) -> None:
    """Padding windows, and padding pieces inside windows, never reach the LSTM."""
    texts = make_documents(6, 7)[0]
    texts[0] = " ".join(texts[0].split()[:8])  # one short document: a single window
    predictor = trained.predictor_
    alone = np.concatenate([predictor.logits([t]) for t in texts])
    together = predictor.logits(texts)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    model = trained.model_
    documents = predictor.documents(texts)
    batch = DocumentDataset(documents, None, 0).collate([(d, None) for d in documents])
    with torch.no_grad():
        whole = model(**as_tensors(batch)).logits.numpy()  # the training path: all windows in one batch
    np.testing.assert_allclose(whole, alone, atol=1e-5)


def test_the_classifier_learns_from_the_end_of_long_documents(trained) -> None:
    texts, labels = make_documents(60, 2)
    assert np.mean(trained.predict(texts) == np.array(labels)) > 0.8  # the cue words are past the first window
    assert trained.metrics_["dev_accuracy"] > 0.8


def test_save_load_and_the_same_predictions(trained, tmp_path: Path) -> None:
    texts = make_documents(10, 3)[0]
    folder = trained.save_pretrained(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["task"] == "documents" and meta["model"]["chunk_length"] == 12
    loaded = open_model(folder, backend="torch", device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(texts), trained.predict_proba(texts), atol=1e-6)


def test_a_document_is_explained_word_by_word_across_its_windows(trained) -> None:
    """Integrated gradients in two halves (a batch of 3 windows at a time, windows sharing 3 pieces) are
    complete over the whole document; occlusion is the drop without each word."""
    pytest.importorskip("captum", reason="explanations need captum (the explain extra)")
    predictor = trained.predictor(batch_size=3)
    predictor.cutter = Windows(12, 3, predictor.cutter.cls_id, predictor.cutter.sep_id)  # 10 pieces, 3 shared
    text = make_documents(1, 11)[0][0]
    assert len(predictor.documents([text])[0]) > 4
    why = predictor.explain([text], steps=64)[0]
    words, check = why["explanation"], why["completeness"]
    assert [w["word"] for w in words] == text.split()  # every word once, though some are in two windows
    assert abs(check["attribution_sum"] - check["score_difference"]) <= 1e-3 + 0.01 * abs(check["score_difference"])
    assert abs(sum(w["score"] for w in words) - check["attribution_sum"]) < 1e-4
    short = " ".join(text.split()[:5])
    [occluded] = predictor.explain([short], method="occlusion")
    label = predictor.labels.names.index(occluded["explained"])
    without = [" ".join(w for j, w in enumerate(short.split()) if j != i) for i in range(5)]
    drops = predictor.predict_proba([short])[0, label] - predictor.predict_proba(without)[:, label]
    np.testing.assert_allclose([w["score"] for w in occluded["explanation"]], drops, atol=1e-5)
    assert "completeness" not in predictor.explain([text], method="gradient-x-input")[0]


@pytest.mark.parametrize("layers", ["last", "scalar-mix"])
def test_cached_window_vectors_and_partial_states_give_the_whole_encoders_logits(
    tiny_encoder_4: str, tmp_path: Path, layers: str
) -> None:
    encoder, tokenizer = load_encoder(tiny_encoder_4)
    texts = make_documents(12, 4)[0]
    for settings in ({"mode": "frozen"}, {"mode": "finetune", "train_top_layers": 2}):
        config = DocumentConfig(encoder=tiny_encoder_4, layers=layers, max_length=32, chunk_length=12, **settings)
        model = BertLSTMDocumentModel(config, encoder, 2).eval()
        cutter = Windows(12, 0, tokenizer.cls_token_id, tokenizer.sep_token_id)
        pieces = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        documents = [cutter(p) for p in pieces]
        windows = [w for d in documents for w in d]
        training = TrainConfig(cache_dir=str(tmp_path / settings["mode"]), cache_dtype="float32", encode_batch_size=5)
        keys = [" ".join(map(str, w)) for w in windows]
        store = model_features(model, tokenizer, keys, lambda w=windows: w, training, torch.device("cpu"), "windows")
        cached = predict_logits(model, DocumentDataset(documents, None, 0, store), 3, torch.device("cpu"))
        whole = predict_logits(model, DocumentDataset(documents, None, 0), 3, torch.device("cpu"))
        np.testing.assert_allclose(cached, whole, atol=1e-5, rtol=0)


def test_finetune_bounds_the_windows_it_trains_through(tiny_encoder: str) -> None:
    clf = BertLSTMDocumentClassifier(encoder=tiny_encoder, mode="finetune", epochs=1, max_chunks=2, **OPTIONS)
    clf.fit(*make_documents(30, 5))
    dataset = clf._dataset(make_documents(4, 6), "x")  # while the encoder trains: at most 2 windows each
    assert max(len(d) for d in dataset.documents) == 2
    assert max(len(d) for d in clf.predictor_.documents(make_documents(4, 6)[0])) > 2  # prediction reads all


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_the_export_is_two_graphs_that_answer_as_pytorch(trained, tmp_path: Path, quantize: str | None) -> None:
    pytest.importorskip("onnxruntime")
    from bertlstm.deploy.export import export_onnx

    folder = trained.save_pretrained(tmp_path / "m")
    path = export_onnx(folder, tmp_path / "doc.onnx", quantize)
    assert (tmp_path / "doc.windows.onnx").is_file()
    texts = make_documents(16, 8)[0]
    onnx = open_model(path).predict_proba(texts)
    torch_proba = open_model(folder, backend="torch", device="cpu", quantize=quantize).predict_proba(texts)
    if quantize is None:
        np.testing.assert_allclose(onnx, torch_proba, atol=1e-4)
    else:  # two different int8 quantizations (onnxruntime's and torch's): close, not equal
        assert np.abs(onnx - torch_proba).max() < 0.1


def test_the_command_line_trains_predicts_and_serves_long_documents(tiny_encoder: str, tmp_path: Path, capsys) -> None:
    from bertlstm.cli import main
    from conftest import cli_train

    texts, labels = make_documents(80, 9)
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels, strict=True)))
    options = ["--long-text", "chunks", "--chunk-length", "12", "--max-length", "32", "--epochs", "1"]
    assert cli_train(tiny_encoder, tmp_path / "m", "--train", data, *options) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["task"] == "documents"
    long_text = " ".join(["good"] * 3000)  # past the classifier's 5,000 characters, not a document's
    capsys.readouterr()  # what training printed: the next steps
    assert main(["predict", "--model", str(tmp_path / "m"), "--text", long_text]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "text,label,prob_neg,prob_pos"
    explain = ["--explain", "--explain-method", "occlusion"]  # the default, integrated gradients: tested above
    assert main(["predict", "--model", str(tmp_path / "m"), "--text", texts[0], *explain]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "text,label,prob_neg,prob_pos,explanation,explained"
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 80
    with pytest.raises(SystemExit):
        main(["train", "--long-text", "chunks", "--help"])
    assert "--chunk-stride" in capsys.readouterr().out
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app

    with TestClient(create_app(ServeConfig(model=str(tmp_path / "m")))) as client:
        answer = client.post("/predict", json={"texts": [long_text]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in ("neg", "pos")


def test_texts_of_one_window_in_training_leave_every_length_to_the_default_engine(
    tiny_encoder: str, tmp_path: Path, capsys, logs
) -> None:
    """Issue #30: a model whose training texts each fit in one window was exported with the window axis fixed at
    1, and onnxruntime then failed on any longer text. Predict, evaluate and serve long texts on the default
    engine (the graph exported as the model was saved), as PyTorch does."""
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    from bertlstm.cli import main
    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app
    from conftest import cli_train, make_sentiment

    short, labels = make_sentiment(80, 1)  # at most 11 words: one window of 32 pieces each
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(short, labels, strict=True)))
    options = ["--long-text", "chunks", "--max-length", "32", "--epochs", "1", "--lstm-units", "8"]
    assert cli_train(tiny_encoder, tmp_path / "m", "--train", train, *options) == 0
    texts, truth = make_documents(12, 5)  # 36 to 96 words: 2 to 4 windows
    test = tmp_path / "long.jsonl"
    test.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, truth, strict=True)))
    logs.clear()
    capsys.readouterr()
    out = {backend: tmp_path / f"{backend}.csv" for backend in ("auto", "torch")}
    for backend, path in out.items():
        argv = ["predict", "--model", str(tmp_path / "m"), "--input", str(test), "--output", str(path)]
        assert main([*argv, "--backend", backend]) == 0
    assert "PyTorch" not in logs.text and "exporting" not in logs.text  # the graph of training, as it is
    auto, torch_out = (np.loadtxt(out[b], delimiter=",", skiprows=1, usecols=(-2, -1)) for b in ("auto", "torch"))
    np.testing.assert_allclose(auto, torch_out, atol=1e-4)
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 12
    with TestClient(create_app(ServeConfig(model=str(tmp_path / "m"), max_wait_ms=0))) as client:
        assert client.get("/metadata").json()["backend"] == "onnx"
        answer = client.post("/predict", json={"texts": texts[:3]})
    assert answer.status_code == 200
    served = [[p["probabilities"]["neg"], p["probabilities"]["pos"]] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(served, torch_out[:3], atol=1e-4)


@pytest.mark.integration
@pytest.mark.slow
def test_a_50000_word_document_predicts_in_under_2_gib(tmp_path: Path) -> None:
    """The default encoder, one document of 50,000 words: its windows are encoded a batch at a time."""
    import subprocess
    import sys

    from conftest import cli_train, repo_root

    examples = repo_root() / "examples" / "data" / "train.csv"
    assert cli_train("minilm", tmp_path / "m", "--train", examples, "--long-text", "chunks", "--epochs", "1") == 0
    rng = random.Random(0)
    document = " ".join(rng.choice(WORDS) for _ in range(50_000))
    (tmp_path / "doc.txt").write_text(document + "\n")
    predict = [sys.executable, "-m", "bertlstm.cli", "predict", "--model", str(tmp_path / "m")]
    stdin = str(tmp_path / "doc.txt")
    probe = (
        "import resource, subprocess; "
        f"subprocess.run({predict!r}, stdin=open({stdin!r}), stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_kib = int(result.stdout.strip().splitlines()[-1])
    assert peak_kib < 2 * 2**20, f"peak RSS {peak_kib / 2**20:.2f} GiB"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_document_folder_runs_on_its_cached_graphs(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    """Both cached graphs (the windows' encoder fused by onnxruntime; int8: quantized) answer as PyTorch does."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("BERTLSTM_GRAPHS", str(tmp_path / "graphs"))
    folder = trained.save_pretrained(tmp_path / "m")
    cached = open_model(folder, precision=precision)
    assert (cached.engine.kind, cached.engine.precision) == ("onnx", precision)
    texts = make_documents(16, 8)[0]
    torch_proba = open_model(folder, backend="torch", device="cpu").predict_proba(texts)
    np.testing.assert_allclose(cached.predict_proba(texts), torch_proba, atol=1e-4 if precision == "fp32" else 0.1)
