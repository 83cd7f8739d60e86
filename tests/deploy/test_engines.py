"""The engine a model folder runs on (core/graph_cache.py): onnxruntime through a graph in the cache, exported
when the model is trained (or after a first answer on PyTorch), checked at every use against the folder it came
from, with PyTorch's probabilities; PyTorch where something asks for it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertlstm.cli import main
from bertlstm.core.graph_cache import cached_graph, graph_folders, open_predictor, runs_on_onnx
from bertlstm.tasks.registry import find_model
from conftest import copy_of, make_sentiment, one_error, train, write_csv

pytest.importorskip("onnxruntime", reason="the onnx extra")
pytest.importorskip("onnxscript", reason="the onnx extra")

TEXTS = make_sentiment(12, 7)[0]


@pytest.fixture
def graphs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The graphs in a fresh folder: nothing exported yet."""
    monkeypatch.setenv("BERTLSTM_GRAPHS", str(tmp_path / "graphs"))
    return tmp_path / "graphs"


def torch_proba(folder: Path, texts: list[str] = TEXTS) -> np.ndarray:
    return open_predictor(find_model(folder), backend="torch").predict_proba(texts)


def test_training_exports_the_graph_and_the_first_predict_runs_on_it(
    tiny_encoder: str, graphs: Path, tmp_path: Path, logs, capsys
) -> None:
    data = write_csv(tmp_path / "train.csv", 60, 1)
    assert train(tiny_encoder, tmp_path / "model", "--train", data) == 0
    assert len(graph_folders(graphs)) == 1 and "exporting the model's graph" in logs.text
    logs.clear()
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "model"), "--text", "good film"]) == 0
    assert "exporting" not in logs.text and "PyTorch" not in logs.text
    assert capsys.readouterr().out.startswith("text,label,prob_neg,prob_pos")
    predictor = open_predictor(find_model(tmp_path / "model"))
    assert predictor.engine.kind == "onnx"
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), torch_proba(tmp_path / "model"), atol=1e-4)


def test_a_folder_without_its_graph_answers_on_pytorch_then_exports_it(
    model_dir: Path, graphs: Path, tmp_path: Path, logs, capsys
) -> None:
    """A folder copied or downloaded: its first predict answers at once, and the next runs on onnxruntime."""
    data = write_csv(tmp_path / "in.csv", n=30, seed=5)
    out = [tmp_path / f"{name}.csv" for name in ("first", "second", "torch")]
    for path, backend in zip(out, ("auto", "auto", "torch"), strict=True):
        argv = ["predict", "--model", str(model_dir), "--input", str(data), "--output", str(path)]
        assert main([*argv, "--backend", backend]) == 0
        if path == out[0]:
            assert "answers on PyTorch this time" in logs.text and len(graph_folders(graphs)) == 1
            logs.clear()
    assert "exporting" not in logs.text
    first, second, torch = (pd.read_csv(p) for p in out)
    columns = [c for c in second.columns if c.startswith("predicted_prob_")]
    assert (second["predicted_label"] == torch["predicted_label"]).all()
    assert np.abs(second[columns].to_numpy() - torch[columns].to_numpy()).max() <= 1e-4
    assert np.abs(first[columns].to_numpy() - torch[columns].to_numpy()).max() <= 1e-6
    stamp = graph_folders(graphs)[0].stat().st_mtime_ns
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--json"]) == 0
    assert "exporting" not in logs.text and graph_folders(graphs)[0].stat().st_mtime_ns >= stamp
    capsys.readouterr()
    assert main(["cache", "info"]) == 0 and "ONNX graphs of model folders: 1 (" in capsys.readouterr().out
    (graphs / "mine.txt").write_text("not a graph")
    assert main(["cache", "clear"]) == 0 and "MiB of ONNX graphs in" in capsys.readouterr().out
    assert sorted(p.name for p in graphs.iterdir()) == ["CACHEDIR.TAG", "mine.txt"]  # the graphs went, nothing else


def test_a_damaged_weight_file_is_refused_before_its_graph_is_used(
    model_dir: Path, graphs: Path, tmp_path: Path, capsys
) -> None:
    folder = copy_of(model_dir, tmp_path)
    first = cached_graph(find_model(folder))
    weights = folder / "model.safetensors"  # the LSTM and head
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert main(["predict", "--model", str(folder), "--text", "good"]) == 2
    one_error(capsys, "is damaged")
    assert first.is_file()


# --- the cache gives the folder's answers, or none (issue #30) -------------------------------------------------
def reversed_labels(graph: Path) -> None:
    """What a hand, a tool or a bad disk may do to a cached graph's metadata: the classes in another order."""
    meta_file = graph.with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    meta["labels"]["names"] = meta["labels"]["names"][::-1]
    meta_file.write_text(json.dumps(meta))


def test_an_edited_cached_metadata_is_exported_again_never_used(
    model_dir: Path, graphs: Path, tmp_path: Path, logs, capsys
) -> None:
    folder = copy_of(model_dir, tmp_path)
    graph = cached_graph(find_model(folder))
    reversed_labels(graph)
    predictor = open_predictor(find_model(folder))
    assert predictor.engine.kind == "onnx" and predictor.labels.names == ("neg", "pos")
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), torch_proba(folder), atol=1e-4)
    assert "the cached graph of" in logs.text and "exporting it again" in logs.text
    assert json.loads(graph.with_suffix(".json").read_text())["labels"]["names"] == ["neg", "pos"]  # anew
    capsys.readouterr()
    data = write_csv(tmp_path / "test.csv", 40, 3)
    reversed_labels(graph)
    assert main(["evaluate", "--model", str(folder), "--data", str(data), "--json"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    ref = find_model(folder)
    assert accuracy == open_predictor(ref, backend="torch").evaluate_file(str(data), ref.reading())["accuracy"]


def test_another_models_graph_on_this_models_key_is_exported_again(
    tiny_encoder: str, model_dir: Path, graphs: Path, tmp_path: Path, logs
) -> None:
    other = tmp_path / "other"
    texts, _ = make_sentiment(60, 2)
    multi = pd.DataFrame({"text": texts, "label": [f"c{i % 4}" for i in range(60)]})
    multi.to_csv(tmp_path / "four.csv", index=False)
    assert train(tiny_encoder, other, "--train", tmp_path / "four.csv") == 0  # four classes, its graph exported
    mine = cached_graph(find_model(model_dir)).parent
    theirs = cached_graph(find_model(other)).parent
    shutil.rmtree(mine)
    shutil.copytree(theirs, mine)
    predictor = open_predictor(find_model(model_dir))
    assert predictor.engine.kind == "onnx" and predictor.predict_proba(TEXTS).shape == (len(TEXTS), 2)
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), torch_proba(model_dir), atol=1e-4)
    assert "exported from another model folder" in logs.text


@pytest.mark.parametrize("part", ["model.onnx", "model.tokenizer.json"])
def test_a_damaged_cached_graph_is_exported_again(model_dir: Path, graphs: Path, part: str, logs) -> None:
    graph = cached_graph(find_model(model_dir))
    damaged = graph.with_name(part)
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    predictor = open_predictor(find_model(model_dir))
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), torch_proba(model_dir), atol=1e-4)
    assert "is damaged" in logs.text and "exporting it again" in logs.text


# --- which engine -----------------------------------------------------------------------------------------------
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
def test_pytorch_runs_a_folder_when_asked_for(asked: dict, graphs: Path) -> None:
    plain = {"backend": "auto", "quantize": None, "device": "auto", "gradients": False, "world": 1}
    assert runs_on_onnx(**plain) is True  # a CPU build of torch: no CUDA
    assert runs_on_onnx(**{**plain, **asked}) is False


def test_the_environment_pins_pytorch(monkeypatch: pytest.MonkeyPatch, graphs: Path) -> None:
    monkeypatch.setenv("BERTLSTM_BACKEND", "torch")
    assert runs_on_onnx("auto", None, "cpu", False, 1) is False


def test_a_graph_that_cannot_be_exported_leaves_pytorch_to_run_the_folder(
    model_dir: Path, graphs: Path, monkeypatch: pytest.MonkeyPatch, logs
) -> None:
    from bertlstm.core import onnx_export

    def fails(*args, **kwargs):
        raise RuntimeError("an operator the exporter does not know")

    monkeypatch.setattr(onnx_export, "export_estimator", fails)
    for _ in range(2):  # the failure is remembered: the second run does not try again
        predictor = open_predictor(find_model(model_dir))
        assert predictor.engine.kind == "torch"
    assert logs.text.count("exporting") == 1 and "an operator the exporter does not know" in logs.text
    assert len(list(graphs.glob("*.failed"))) == 1
    with pytest.raises(Exception, match="its export failed before"):
        open_predictor(find_model(model_dir), backend="onnx")  # asked for: an error, not PyTorch


def test_the_cache_keeps_the_most_recently_used_graphs(tmp_path: Path) -> None:
    import os

    from bertlstm.core.folders import TAG_NAME, tag_cache
    from bertlstm.core.graph_cache import GRAPH, GRAPHS_TAG, clear_graphs, evict

    def fill(root: Path) -> list[str]:
        names = [f"{i:032x}" for i in range(4)]
        for i, name in enumerate(names):
            (root / name).mkdir(parents=True)
            (root / name / GRAPH).write_bytes(b"graph")
            os.utime(root / name, (i, 100 + (i if i != 1 else 10)))  # the second used last
        return names

    names = fill(tmp_path / "cache")
    tag_cache(tmp_path / "cache", GRAPHS_TAG)
    evict(tmp_path / "cache", 2)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([names[1], names[3], TAG_NAME])
    # a folder of the user's own exports named as the cache: not tagged, so nothing in it is evicted or cleared
    fill(tmp_path / "mine")
    (tmp_path / "mine" / "note.failed").write_text("mine")
    evict(tmp_path / "mine", 2)
    assert clear_graphs(tmp_path / "mine") == 0 and len(list((tmp_path / "mine").iterdir())) == 5


def test_a_cache_that_cannot_be_written_leaves_the_folder_on_pytorch(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs
) -> None:
    (tmp_path / "ro").write_text("a file where the cache's folder would be")  # mkdir fails as on a read-only disk
    monkeypatch.setenv("BERTLSTM_GRAPHS", str(tmp_path / "ro" / "graphs"))
    predictor = open_predictor(find_model(model_dir))
    assert predictor.engine.kind == "torch" and "cannot be written" in logs.text
    assert predictor.predict_proba(TEXTS).shape == (len(TEXTS), 2)


def test_open_model_is_the_one_entry_point_and_the_old_name_still_calls_it(model_dir: Path, tmp_path: Path) -> None:
    import bertlstm
    from bertlstm.deploy.export import export_onnx
    from bertlstm.predict import load_predictor

    graph = export_onnx(model_dir, tmp_path / "m.onnx")
    for model in (model_dir, graph):
        opened = bertlstm.open_model(model)
        assert opened.engine.kind == "onnx" and opened.labels.names == ("neg", "pos")
        with pytest.deprecated_call():
            again = load_predictor(str(model))
        np.testing.assert_allclose(again.predict_proba(TEXTS), opened.predict_proba(TEXTS), atol=1e-6)


# --- precision --------------------------------------------------------------------------------------------------
def test_int8_runs_the_folders_own_int8_graph_cached_apart_from_fp32(
    model_dir: Path, graphs: Path, tmp_path: Path, logs, capsys
) -> None:
    fp32 = open_predictor(find_model(model_dir))
    int8 = open_predictor(find_model(model_dir), precision="int8")
    assert (int8.engine.kind, int8.engine.precision, int8.metadata()["precision"]) == ("onnx", "int8", "int8")
    assert fp32.engine.precision == "fp32" and len(graph_folders(graphs)) == 2  # keyed apart
    exact, close = fp32.predict_proba(TEXTS), int8.predict_proba(TEXTS)
    assert not np.array_equal(exact, close)
    np.testing.assert_allclose(close, exact, atol=0.05)
    logs.clear()
    capsys.readouterr()
    assert main(["predict", "--model", str(model_dir), "--precision", "int8", "--text", "good film"]) == 0
    assert "exporting" not in logs.text and capsys.readouterr().out.startswith("text,label")
    # PyTorch runs it with int8 weights where the folder runs on PyTorch
    pinned = open_predictor(find_model(model_dir), backend="torch", precision="int8")
    assert (pinned.engine.kind, pinned.engine.quantized) == ("torch", "int8")


def test_bf16_runs_on_pytorch_where_the_hardware_has_it_and_is_refused_elsewhere(
    model_dir: Path, graphs: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from bertlstm.core import torch_engine

    monkeypatch.setattr(torch_engine, "native_bf16", lambda device: False)
    assert main(["predict", "--model", str(model_dir), "--precision", "bf16", "--text", "good film"]) == 2
    one_error(capsys, "--precision bf16 needs hardware that computes in bf16")
    monkeypatch.setattr(torch_engine, "native_bf16", lambda device: True)  # emulated here: the numbers are bf16's
    bf16 = open_predictor(find_model(model_dir), precision="bf16")
    assert (bf16.engine.kind, bf16.engine.precision) == ("torch", "bf16") and not graph_folders(graphs)
    exact, close = torch_proba(model_dir), bf16.predict_proba(TEXTS)
    assert not np.array_equal(exact, close)
    np.testing.assert_allclose(close, exact, atol=0.05)


@pytest.mark.parametrize(
    ("bf16", "int8", "chosen", "engine"),
    [(True, True, "bf16", "torch"), (False, True, "int8", "onnx"), (False, False, "fp32", "onnx")],
)
def test_auto_is_the_fastest_precision_the_machine_computes_natively(
    model_dir: Path, graphs: Path, monkeypatch: pytest.MonkeyPatch, logs, bf16, int8, chosen, engine
) -> None:
    from bertlstm.core import feature_cache, torch_engine

    monkeypatch.setattr(feature_cache, "native_bf16", lambda device: bf16)
    monkeypatch.setattr(feature_cache, "native_int8", lambda device: int8)
    monkeypatch.setattr(torch_engine, "native_bf16", lambda device: bf16)
    predictor = open_predictor(find_model(model_dir), precision="auto")
    assert (predictor.engine.precision, predictor.engine.kind) == (chosen, engine)
    assert f"precision {chosen} (auto: " in logs.text


def test_an_export_runs_in_the_precision_it_was_exported_in(model_dir: Path, tmp_path: Path, capsys) -> None:
    from bertlstm.deploy.export import export_onnx

    exports = {q: export_onnx(model_dir, tmp_path / f"m-{q}.onnx", q) for q in (None, "int8")}
    for quantize, path in exports.items():
        for precision in ("fp32", "auto", quantize or "fp32"):
            opened = open_predictor(find_model(path), precision=precision)
            assert opened.engine.precision == (quantize or "fp32")
    assert main(["predict", "--model", str(exports[None]), "--precision", "int8", "--text", "x"]) == 2
    one_error(capsys, "was exported in fp32", "the precision it was exported in")
    model = ["predict", "--model", str(model_dir), "--text", "x"]
    assert main([*model, "--quantize", "int8", "--precision", "bf16"]) == 2
    one_error(capsys, "--quantize int8 and --precision bf16 disagree")


# --- onnxruntime's fusions, for the cache's graphs only -----------------------------------------------------------
def operators(graph: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(graph)).graph.node}


def test_the_cached_graph_is_fused_and_an_export_stays_standard_onnx(
    model_dir: Path, graphs: Path, tmp_path: Path
) -> None:
    from bertlstm.deploy.export import export_onnx

    cached = cached_graph(find_model(model_dir))
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= operators(cached)
    assert "Softmax" not in operators(cached)  # every layer's attention is one node
    exported = operators(export_onnx(model_dir, tmp_path / "m.onnx"))
    assert not exported & {"Attention", "SkipLayerNormalization", "BiasGelu"} and "Softmax" in exported
    fused = open_predictor(find_model(model_dir))
    np.testing.assert_allclose(fused.predict_proba(TEXTS), torch_proba(model_dir), atol=1e-4)


def test_a_fused_graph_that_fails_the_check_is_not_used(
    model_dir: Path, graphs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    from onnx import numpy_helper

    from bertlstm.core import onnx_fusion

    def wrong(source: Path, target: Path, heads: int, hidden: int) -> bool:  # a "fusion" that changes the answers
        model = onnx.load(str(source))
        head = next(t for t in model.graph.initializer if t.name.startswith("model.head"))
        head.CopyFrom(numpy_helper.from_array(2 * numpy_helper.to_array(head), head.name))
        onnx.save(model, str(target))
        return True

    monkeypatch.setattr(onnx_fusion, "fuse_graph", wrong)
    assert "Softmax" in operators(cached_graph(find_model(model_dir)))  # the plain graph, checked
    np.testing.assert_allclose(
        open_predictor(find_model(model_dir)).predict_proba(TEXTS), torch_proba(model_dir), atol=1e-4
    )


def test_a_graph_whose_attention_is_not_in_the_expected_form_is_left_as_it_is(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from bertlstm.core.onnx_fusion import fuse_graph

    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["b", "t"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"])
    out = helper.make_tensor_value_info("p", TensorProto.FLOAT, ["b", "t"])
    softmax = helper.make_node("Softmax", ["scores"], ["p"])  # no scaled scores, no mask added
    onnx.save(helper.make_model(helper.make_graph([softmax], "g", [scores, mask], [out])), str(tmp_path / "g.onnx"))
    assert fuse_graph(tmp_path / "g.onnx", tmp_path / "fused.onnx", 2, 32) is False
    assert not (tmp_path / "fused.onnx").exists()
