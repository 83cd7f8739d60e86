"""The engine a model folder runs on (deploy/engines.py): onnxruntime through a graph exported once into the
cache, with PyTorch's probabilities; PyTorch where something asks for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertlstm.cli import main
from bertlstm.deploy.engines import cached_graph, open_predictor, runs_on_onnx
from bertlstm.tasks.registry import find_model
from conftest import copy_of, make_sentiment, one_error, write_csv

pytest.importorskip("onnxruntime", reason="the onnx extra")
pytest.importorskip("onnxscript", reason="the onnx extra")


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``backend`` auto as a user has it (conftest pins PyTorch), with the graphs in a fresh folder."""
    monkeypatch.delenv("BERTLSTM_BACKEND")
    monkeypatch.setenv("BERTLSTM_GRAPHS", str(tmp_path / "graphs"))
    return tmp_path / "graphs"


def test_a_folder_predicts_on_its_cached_graph_as_pytorch_does(
    model_dir: Path, auto: Path, tmp_path: Path, caplog, capsys
) -> None:
    data = write_csv(tmp_path / "in.csv", n=30, seed=5)
    out = {backend: tmp_path / f"{backend}.csv" for backend in ("auto", "torch")}
    for backend, path in out.items():
        argv = ["predict", "--model", str(model_dir), "--input", str(data), "--output", str(path)]
        assert main([*argv, "--backend", backend]) == 0
    graphs = list(auto.glob("*/model.onnx"))
    assert len(graphs) == 1 and "exporting" in caplog.text  # exported once, on first use ...
    onnx, torch = pd.read_csv(out["auto"]), pd.read_csv(out["torch"])
    assert (onnx["predicted_label"] == torch["predicted_label"]).all()
    columns = [c for c in onnx.columns if c.startswith("predicted_prob_")]
    assert np.abs(onnx[columns].to_numpy() - torch[columns].to_numpy()).max() <= 1e-4
    caplog.clear()
    stamp = graphs[0].stat().st_mtime_ns
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--json"]) == 0
    assert main(["predict", "--model", str(model_dir), "--text", "good", "--backend", "onnx"]) == 0
    assert "exporting" not in caplog.text and graphs[0].stat().st_mtime_ns == stamp  # ... and reused after
    capsys.readouterr()
    assert main(["cache", "info"]) == 0 and "ONNX graphs of model folders: 1 (" in capsys.readouterr().out
    (auto / "mine.txt").write_text("not a graph")
    assert main(["cache", "clear"]) == 0 and "MiB of ONNX graphs in" in capsys.readouterr().out
    assert [p.name for p in auto.iterdir()] == ["mine.txt"]  # the graphs went, nothing else


def test_the_graph_is_that_of_the_folders_files(model_dir: Path, auto: Path, tmp_path: Path, capsys) -> None:
    """Another model is another graph, and a damaged weight file is refused before its graph is used."""
    folder = copy_of(model_dir, tmp_path)
    first = cached_graph(find_model(folder))
    predictor = open_predictor(find_model(folder))
    assert predictor.engine.kind == "onnx" and predictor.metadata()["backend"] == "onnx"
    texts = make_sentiment(8, 2)[0]
    torch = open_predictor(find_model(folder), backend="torch")
    assert torch.engine.kind == "torch"
    assert np.abs(predictor.predict_proba(texts) - torch.predict_proba(texts)).max() <= 1e-4
    weights = folder / "model.safetensors"  # the LSTM and head
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "is damaged")
    assert first.is_file()


@pytest.mark.parametrize(
    "asked",
    [
        {"quantize": "int8"},  # PyTorch's int8 weights
        {"gradients": True},  # integrated gradients follow them through PyTorch
        {"world": 2},  # torchrun
        {"device": "cuda"},
        {"backend": "torch"},
    ],
)
def test_pytorch_runs_a_folder_when_asked_for(asked: dict, auto: Path) -> None:
    plain = {"backend": "auto", "quantize": None, "device": "auto", "gradients": False, "world": 1}
    assert runs_on_onnx(**plain) is True  # a CPU build of torch: no CUDA
    assert runs_on_onnx(**{**plain, **asked}) is False


def test_the_environment_pins_pytorch(monkeypatch: pytest.MonkeyPatch, auto: Path) -> None:
    monkeypatch.setenv("BERTLSTM_BACKEND", "torch")
    assert runs_on_onnx("auto", None, "cpu", False, 1) is False


def test_a_graph_that_cannot_be_exported_leaves_pytorch_to_run_the_folder(
    model_dir: Path, auto: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from bertlstm.deploy import export

    def fails(*args, **kwargs):
        raise RuntimeError("an operator the exporter does not know")

    monkeypatch.setattr(export, "export_onnx", fails)
    for _ in range(2):  # the failure is remembered: the second run does not try again
        predictor = open_predictor(find_model(model_dir))
        assert predictor.engine.kind == "torch"
    assert caplog.text.count("exporting") == 1 and "an operator the exporter does not know" in caplog.text
    assert len(list(auto.glob("*.failed"))) == 1
    with pytest.raises(Exception, match="its export failed before"):
        open_predictor(find_model(model_dir), backend="onnx")  # asked for: an error, not PyTorch


def test_the_cache_keeps_the_most_recently_used_graphs(tmp_path: Path) -> None:
    import os

    from bertlstm.deploy.engines import GRAPH, evict

    for i in range(4):
        (tmp_path / f"g{i}").mkdir()
        (tmp_path / f"g{i}" / GRAPH).write_bytes(b"graph")
        os.utime(tmp_path / f"g{i}", (i, 100 + (i if i != 1 else 10)))  # g1 used last
    evict(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g1", "g3"]
