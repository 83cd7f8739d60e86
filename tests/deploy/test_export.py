"""ONNX export of every recipe, the masked LSTM it relies on, the int8 paths, and prediction back ends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from bertlstm import BertLSTMClassifier, BertLSTMError, open_model
from bertlstm.cli import main
from bertlstm.core.masked_lstm import MaskedLSTM
from bertlstm.deploy.config import PredictConfig
from bertlstm.deploy.export import export_onnx
from bertlstm.deploy.files import predict_file
from conftest import make_multilabel, make_sentiment

pytest.importorskip("onnxruntime")

RECIPES = {
    "frozen": {},
    "pooled": {"mode": "pooled"},
    "finetune": {"mode": "finetune"},
    "bidirectional": {"bidirectional": True, "lstm_layers": 2},
    "multi-label": {"multi_label": True, "bidirectional": True, "layers": "scalar-mix"},
}
PROBE = make_sentiment(40, seed=11)[0] + ["good", "the plot was very boring and the actor was not good at all so sad"]


@pytest.fixture(scope="module")
def models(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small trained model folder per recipe."""
    folders = {}
    for name, options in RECIPES.items():
        multi = options.get("multi_label", False)
        texts, labels = make_multilabel(120, 1) if multi else make_sentiment(120, 1)
        labels = [label.split(",") for label in labels] if multi else labels
        clf = BertLSTMClassifier(encoder=tiny_encoder, lstm_units=8, epochs=1, progress=False, device="cpu", **options)
        folders[name] = clf.fit(texts, labels).save_pretrained(tmp_path_factory.mktemp(name) / "model")
    return folders


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_masked_lstm_equals_the_packed_one(bidirectional: bool, layers: int) -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, num_layers=layers, bidirectional=bidirectional, batch_first=True).eval()
    x, lengths = torch.randn(4, 9, 6), torch.tensor([9, 3, 1, 6])
    with torch.no_grad():
        _, (h_n, _) = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        packed = torch.cat([h_n[-2], h_n[-1]], -1) if bidirectional else h_n[-1]
        masked = MaskedLSTM(lstm)(x, lengths)
        x[1, 3:] = 1e3  # whatever sits in the padding changes nothing
        torch.testing.assert_close(MaskedLSTM(lstm)(x, lengths), masked, atol=0, rtol=0)
    torch.testing.assert_close(masked, packed, atol=1e-6, rtol=0)


def test_each_lstm_layer_is_one_onnx_lstm_that_reads_the_lengths(models, tmp_path: Path) -> None:
    """The exported LSTM is ONNX's own operator, one node per layer, both directions in it, fed each row's
    length (what onnxruntime runs fastest, and what its int8 quantizer turns into an int8 LSTM)."""
    import onnx

    graph = onnx.load(str(export_onnx(models["bidirectional"], tmp_path / "m.onnx"))).graph
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    assert len(lstms) == 2  # lstm_layers 2
    for node in lstms:
        assert len(node.input) >= 5 and node.input[4]  # sequence_lens
        assert (
            onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "direction"))
            == b"bidirectional"
        )
    int8 = onnx.load(str(export_onnx(models["bidirectional"], tmp_path / "q.onnx", quantize="int8"))).graph
    assert [node.op_type for node in int8.node].count("DynamicQuantizeLSTM") == 2


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_exports_and_onnxruntime_agrees_with_pytorch(models, tmp_path: Path, recipe: str) -> None:
    path = export_onnx(models[recipe], tmp_path / "model.onnx")
    assert path.is_file() and (tmp_path / "model.tokenizer.json").is_file()
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["labels"]["names"] and meta["max_length"] == 128 and meta["quantized"] is None
    torch_proba = open_model(models[recipe], backend="torch", device="cpu").predict_proba(PROBE)
    onnx = open_model(path, batch_size=16)  # batches of mixed lengths: padding inside the graph
    np.testing.assert_allclose(onnx.predict_proba(PROBE), torch_proba, atol=1e-4)
    assert onnx.labels.multi_label == (recipe == "multi-label")


def test_onnxruntime_and_tokenizers_alone_can_serve_an_export(models, tmp_path: Path) -> None:
    """What a consumer without bertlstm, torch or transformers writes."""
    export_onnx(models["bidirectional"], tmp_path / "m.onnx")
    import onnxruntime
    from tokenizers import Tokenizer

    meta = json.loads((tmp_path / "m.json").read_text())
    tokenizer = Tokenizer.from_file(str(tmp_path / meta["tokenizer"]))
    tokenizer.enable_padding(pad_id=meta["pad_token_id"])
    encodings = tokenizer.encode_batch(PROBE[:8])
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    logits = onnxruntime.InferenceSession(str(tmp_path / "m.onnx")).run(["logits"], feeds)[0]
    expected = open_model(models["bidirectional"], backend="torch", device="cpu").predict_proba(PROBE[:8])
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(proba, expected, atol=1e-4)
    assert [meta["labels"]["names"][i] for i in logits.argmax(1)] == list(np.array(["neg", "pos"])[expected.argmax(1)])


def test_int8_paths_run_and_stay_close(models, tmp_path: Path) -> None:
    fp32 = open_model(models["frozen"], backend="torch", device="cpu").predict_proba(PROBE)
    torch_int8 = open_model(models["frozen"], backend="torch", device="cpu", quantize="int8").predict_proba(PROBE)
    path = export_onnx(models["frozen"], tmp_path / "q.onnx", quantize="int8")
    onnx_int8 = open_model(path).predict_proba(PROBE)
    assert json.loads((tmp_path / "q.json").read_text())["quantized"] == "int8"
    for proba in (torch_int8, onnx_int8):
        assert proba.shape == fp32.shape and np.abs(proba - fp32).max() < 0.1


def test_prediction_streams_a_file_in_chunks_in_order(models, tmp_path: Path) -> None:
    texts = make_sentiment(2500, seed=3)[0]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    settings = {
        "model": str(models["frozen"]),
        "input": str(tmp_path / "in.csv"),
        "output": str(tmp_path / "out.jsonl"),
    }
    rows = predict_file(PredictConfig(**settings, chunk_rows=700))
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert rows == 2500 and out["text"].tolist() == texts
    whole = open_model(models["frozen"], backend="torch", device="cpu").predict_proba(texts)
    np.testing.assert_allclose(out[["prob_neg", "prob_pos"]].to_numpy(), whole, atol=1e-5)


def test_cli_export_and_predict_with_each_back_end(models, tmp_path: Path, capsys) -> None:
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(models["frozen"]), "--output", str(onnx)]) == 0
    results = []
    for args in (
        ["--model", str(models["frozen"])],
        ["--model", str(onnx)],
        ["--model", str(models["frozen"]), "--quantize", "int8"],
    ):
        capsys.readouterr()
        assert main(["predict", *args, "--text", "good film", "--text", "awful plot"]) == 0
        results.append(capsys.readouterr().out.splitlines())
    assert results[0][0] == "text,label,prob_neg,prob_pos" and len(results[1]) == 3
    assert [r.split(",")[1] for r in results[0][1:]] == [r.split(",")[1] for r in results[1][1:]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "torch", "--model-onnx"], "is an ONNX graph: use the onnx back end"),
        (["--quantize", "int8", "--backend", "onnx", "--model-onnx"], "quantized when it is exported"),
        (["--quantize", "int8", "--backend", "onnx"], "quantized when it is exported"),  # a folder's graph too
    ],
)
def test_back_end_mistakes_are_one_error_line(models, tmp_path: Path, capsys, args, message) -> None:
    model = str(models["frozen"])
    if "--model-onnx" in args:
        args = [a for a in args if a != "--model-onnx"]
        export_onnx(models["frozen"], tmp_path / "m.onnx")
        model = str(tmp_path / "m.onnx")
    assert main(["predict", "--model", model, "--text", "x", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_a_damaged_export_is_refused(models, tmp_path: Path) -> None:
    path = export_onnx(models["frozen"], tmp_path / "m.onnx")
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(BertLSTMError, match="damaged"):
        open_model(path)
    with pytest.raises(BertLSTMError, match="name a .onnx file"):
        export_onnx(models["frozen"], tmp_path / "m.bin")
