"""Why a classifier said what it said (core/attribution.py): word scores by integrated gradients, gradient x
input and occlusion, for every recipe, through the Python API, the command line and the server."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bertlstm import BertLSTMClassifier, open_model
from bertlstm.cli import main
from bertlstm.core.attribution import Pieces
from conftest import make_multilabel, make_sentiment, one_error, write_csv

pytest.importorskip("captum", reason="explanations need captum (the explain extra)")
TEXT = "a wonderful , moving film"


def fitted(encoder: str, **options) -> BertLSTMClassifier:
    texts, labels = make_sentiment(120, seed=1)
    settings = {"epochs": 3, "lstm_units": 8, "lr": 1e-2, "progress": False, "device": "cpu", **options}
    return BertLSTMClassifier(encoder=encoder, **settings).fit(texts, labels)


@pytest.fixture(scope="module")
def frozen(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted(tiny_encoder).save_pretrained(tmp_path_factory.mktemp("explain") / "model")


# --- words -------------------------------------------------------------------------------------------------
def test_a_words_score_is_the_sum_of_its_pieces() -> None:
    """ "unbelievable film": [CLS] un ##believ ##able film [SEP], words 0 0 0 1."""
    encoding = SimpleNamespace(
        ids=[101, 1, 2, 3, 4, 102],
        word_ids=[None, 0, 0, 0, 1, None],
        offsets=[(0, 0), (0, 2), (2, 8), (8, 12), (13, 17), (0, 0)],
    )
    pieces = Pieces.of(encoding, "unbelievable film")
    assert pieces.words == ["unbelievable", "film"] and pieces.word_of == [None, 0, 0, 0, 1, None]
    scores = pieces.word_scores(np.array([9.0, 0.1, 0.2, 0.3, -0.5, 9.0]))  # special tokens count for no word
    assert scores == [{"word": "unbelievable", "score": 0.6}, {"word": "film", "score": -0.5}]
    assert pieces.without_word(0) == [101, 4, 102]
    head_tail = Pieces.of(encoding, "unbelievable film", kept=[0, 1, 4, 5])  # what a head-tail cut reads
    assert head_tail.words == ["un", "film"] and head_tail.ids == [101, 1, 4, 102]


def test_words_follow_the_encoders_pre_tokenizer() -> None:
    """The default encoder's WordPiece: a long word in several pieces is one word; punctuation is its own."""
    from tokenizers import Tokenizer

    from bertlstm.core.encoder_names import resolve_encoder

    tokenizer = Tokenizer.from_file(str(Path(resolve_encoder("minilm")) / "tokenizer.json"))
    text = "Unbelievably, the film works."
    encoding = tokenizer.encode(text)
    pieces = Pieces.of(encoding, text)
    assert pieces.words == ["Unbelievably", ",", "the", "film", "works", "."]
    assert pieces.word_of.count(0) > 1  # "unbelievably" is more than one piece


# --- the methods -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mode": "pooled"},
        {"mode": "finetune"},
        {"mode": "finetune", "train_top_layers": 1},
        {"layers": "scalar-mix"},
    ],
    ids=["frozen", "pooled", "finetune", "partial", "scalar-mix"],
)
def test_integrated_gradients_are_complete_for_every_recipe(tiny_encoder: str, options: dict) -> None:
    """Completeness: the words' scores sum to the score of the text minus that of the baseline."""
    predictor = fitted(tiny_encoder, **options).predictor_
    texts = [TEXT, "dull", "the plot was awful but the actors were good"]
    for why, proba in zip(predictor.explain(texts, steps=64), predictor.predict_proba(texts), strict=True):
        check, words = why["completeness"], why["explanation"]
        assert abs(check["attribution_sum"] - check["score_difference"]) <= 1e-3 + 0.01 * abs(check["score_difference"])
        assert abs(sum(w["score"] for w in words) - check["attribution_sum"]) < 1e-4  # special tokens carry none
        assert why["explained"] == predictor.labels.names[int(proba.argmax())]


def test_occlusion_is_the_drop_without_each_word(frozen: Path) -> None:
    predictor = open_model(frozen, backend="torch", device="cpu")
    why = predictor.explain([TEXT], method="occlusion")[0]
    words = TEXT.split()
    assert [w["word"] for w in why["explanation"]] == words
    label = predictor.labels.names.index(why["explained"])
    alone = predictor.predict_proba([TEXT])[0, label]
    without = predictor.predict_proba([" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))])[:, label]
    assert np.allclose([w["score"] for w in why["explanation"]], alone - without, atol=1e-5)


def test_the_estimator_explains_texts_and_tables(tiny_encoder: str) -> None:
    clf = fitted(tiny_encoder)
    import pandas as pd

    frame = pd.DataFrame({"id": [1], "text": [TEXT]})
    assert clf.explain(frame, method="occlusion") == clf.explain([TEXT], method="occlusion")
    assert [w["word"] for w in clf.explain([TEXT])[0]["explanation"]] == TEXT.split()


def test_gradient_x_input_and_another_label(frozen: Path) -> None:
    predictor = open_model(frozen, backend="torch", device="cpu")
    why = predictor.explain([TEXT], method="gradient-x-input", label="neg")[0]
    assert why["explained"] == "neg" and len(why["explanation"]) == 5 and "completeness" not in why
    with pytest.raises(Exception, match="'maybe' is not a label of this model: neg, pos"):
        predictor.explain([TEXT], label="maybe")


def test_multi_label_explains_each_predicted_label(tiny_encoder: str) -> None:
    texts, labels = make_multilabel(160, seed=1)
    clf = BertLSTMClassifier(encoder=tiny_encoder, multi_label=True, epochs=4, lstm_units=8, lr=1e-2, progress=False)
    predictor = clf.fit(texts, [label.split(",") for label in labels]).predictor_
    [why] = predictor.explain(texts[:1], steps=16)
    assert set(why["explanation"]) == set(why["explained"]) == set(why["completeness"])
    assert why["explained"] == predictor.labels.decode(predictor.predict_proba(texts[:1]))[0]


# --- where people ask --------------------------------------------------------------------------------------
def test_predict_explain_writes_the_words_as_json(frozen: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(["predict", "--model", str(frozen), "--text", TEXT, "--explain", "--output", str(tmp_path / "p.jsonl")])
        == 0
    )
    row = json.loads((tmp_path / "p.jsonl").read_text())
    assert [w["word"] for w in row["explanation"]] == TEXT.split() and row["explained"] == row["label"]
    assert set(row["completeness"]) == {"attribution_sum", "score_difference"}
    capsys.readouterr()
    assert main(["predict", "--model", str(frozen), "--text", TEXT, "--explain", "--explain-method", "occlusion"]) == 0
    import csv
    import io

    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [w["word"] for w in json.loads(row["explanation"])] == TEXT.split()  # a JSON string in a CSV cell
    labelled = write_csv(tmp_path / "labelled.csv", n=4)  # a file with its own labels: predicted_label ...
    assert (
        main(
            [
                "predict",
                "--model",
                str(frozen),
                "--input",
                str(labelled),
                "--explain",
                "--output",
                str(tmp_path / "l.jsonl"),
            ]
        )
        == 0
    )
    row = json.loads((tmp_path / "l.jsonl").read_text().splitlines()[0])
    assert {"label", "predicted_label", "explanation", "explained", "completeness"} <= set(row)  # ... and why


def test_what_cannot_be_explained_is_one_error_line(
    frozen: Path, tiny_encoder: str, tmp_path: Path, capsys, monkeypatch
):
    argv = ["predict", "--model", str(frozen), "--text", TEXT, "--explain"]
    assert main([*argv, "--quantize", "int8", "--explain-method", "integrated-gradients"]) == 2
    one_error(capsys, "--explain-method integrated-gradients follows gradients", "explain by occlusion")
    assert main([*argv, "--quantize", "int8"]) == 0  # int8 weights: occlusion, by default
    out = capsys.readouterr().out
    assert out.startswith("text,label,prob_neg,prob_pos,explanation,explained\n")  # no completeness
    assert main([*argv, "--explain-label", "maybe"]) == 2
    one_error(capsys, "--explain-label 'maybe' is not a label of this model")
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "captum" else found(name))
    for method in ("integrated-gradients", "gradient-x-input"):
        assert main([*argv, "--explain-method", method]) == 2
        one_error(capsys, "needs the captum package: pip install 'bertlstm[explain]'")
    assert main(argv) == 0  # without Captum, what is at hand: occlusion
    assert "explanation" in capsys.readouterr().out.splitlines()[0]


def test_the_server_explains_when_asked(frozen: Path) -> None:
    from fastapi.testclient import TestClient

    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app

    served = ServeConfig(model=str(frozen), backend="torch", device="cpu", max_wait_ms=0)  # gradients: PyTorch
    with TestClient(create_app(served)) as client:
        plain = client.post("/predict", json={"texts": [TEXT]}).json()["predictions"][0]
        assert "explanation" not in plain
        answer = client.post("/predict", json={"texts": [TEXT, "dull"], "explain": True}).json()["predictions"]
        assert [w["word"] for w in answer[0]["explanation"]] == TEXT.split() and "completeness" in answer[0]
        assert answer[0]["label"] == plain["label"] == answer[0]["explained"]
        bad = client.post("/predict", json={"texts": [TEXT], "explain": True, "explain_label": "maybe"})
        assert bad.status_code == 400 and "not a label of this model" in bad.json()["detail"]


def test_a_tagger_explains_each_entity_by_occlusion(tiny_encoder: str, tmp_path: Path, capsys) -> None:
    from bertlstm import BertLSTMTagger
    from bertlstm.tasks.tag.data import Sentence
    from conftest import make_tagged

    tagger = BertLSTMTagger(encoder=tiny_encoder, epochs=6, lstm_units=16, lr=1e-2, progress=False)
    folder = tagger.fit(*make_tagged(120, 1)).save_pretrained(tmp_path / "tagger")
    predictor = open_model(folder, backend="torch", device="cpu")
    text = "the actor was good in this scene story"
    [answer] = predictor.explain([text])
    assert answer["entities"], "the tagger learnt no entity: the test shows nothing"
    assert [{k: e[k] for k in ("text", "type", "start", "end")} for e in answer["entities"]] == predictor.answer(
        [text]
    )[0]["entities"]
    assert predictor.explain(["", "actor", "good"]) == [{"entities": []}, *predictor.explain(["actor", "good"])]
    assert all(e["explanation"] == [] for e in predictor.explain(["actor"])[0]["entities"])  # no other word
    words = text.split()
    for entity in answer["entities"]:
        first, last = len(text[: entity["start"]].split()), len(text[: entity["end"]].split())
        others = [w for i, w in enumerate(words) if not first <= i < last]
        assert [w["word"] for w in entity["explanation"]] == others
        # the first other word's score, recomputed: the entity's tag probability with and without it
        w = next(i for i in range(len(words)) if not first <= i < last)
        probs = predictor._tag_probabilities([Sentence(words, None, 0), Sentence(words[:w] + words[w + 1 :], None, 1)])
        tags = probs[0].argmax(-1) if predictor.crf is None else predictor.tag_ids([Sentence(words)])[0]
        shift = -1 if w < first else 0
        drop = np.mean([probs[0][i, tags[i]] for i in range(first, last)])
        drop -= np.mean([probs[1][i + shift, tags[i]] for i in range(first, last)])
        assert abs(entity["explanation"][0]["score"] - drop) < 1e-5
    assert (
        main(["predict", "--model", str(folder), "--text", text, "--explain", "--output", str(tmp_path / "t.jsonl")])
        == 0
    )
    row = json.loads((tmp_path / "t.jsonl").read_text())
    assert [e["explanation"] for e in row["entities"]] == [e["explanation"] for e in answer["entities"]]
    assert (
        main(["predict", "--model", str(folder), "--text", text, "--explain-method", "gradient-x-input", "--explain"])
        == 2
    )
    one_error(capsys, "taggers do not follow yet: explain by occlusion")
