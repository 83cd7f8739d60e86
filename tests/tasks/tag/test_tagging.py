"""Token tagging with the tiny random BERT: reading files, schemes, windows, the model, fit/predict/save/load,
and the command line."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bertlstm import cli, open_model
from bertlstm.core.encoders import load_encoder
from bertlstm.core.errors import BertLSTMError
from bertlstm.core.inference import as_tensors
from bertlstm.deploy.config import ServeConfig
from bertlstm.deploy.serving import create_app
from bertlstm.tasks.tag.data import Sentence, detect_scheme, read_tagged, spans, split_words, to_iob2
from bertlstm.tasks.tag.estimator import BertLSTMTagger
from bertlstm.tasks.tag.metrics import tag_metrics
from bertlstm.tasks.tag.predictor import viterbi
from bertlstm.tasks.tag.windows import WordPieces
from conftest import WORDS, make_tagged, shared_data, write_conll


# --- files and schemes -------------------------------------------------------------------------------------
def test_read_conll_documents_and_tag_column(tmp_path: Path) -> None:
    path = tmp_path / "a.conll"
    path.write_text(
        "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n\n-DOCSTART- -X- O\n\nHi UH O\n"
    )
    sentences = read_tagged(path)
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter"], ["Hi"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER"], ["O"]]
    assert [s.document for s in sentences] == [1, 1, 2]
    assert read_tagged(path, tag_column=1)[0].tags == ["NNP", "VBZ"]


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("EU B-ORG\nrejects\n", ".conll", "line 2: expected a token and a tag"),
        ('{"tokens": ["a", "b"], "tags": ["O"]}\n', ".jsonl", "line 1: 2 tokens but 1 tags"),
        ('{"tokens": [], "tags": []}\n', ".jsonl", "line 1: a sentence with no tokens"),
        ("{not json\n", ".jsonl", "line 1: not valid JSON"),
        ("\n\n", ".conll", "no sentences"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(BertLSTMError, match=message):
        read_tagged(path)


def test_a_tag_outside_the_scheme_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.conll"
    path.write_text("a O\nb E-PER\n")
    sentences = read_tagged(path)
    assert detect_scheme(sentences) == "bioes"
    with pytest.raises(BertLSTMError, match="line 2: tag 'E-PER' is not in the IOB2 scheme"):
        to_iob2(sentences, "iob2", str(path))
    with pytest.raises(BertLSTMError, match="tag 'PER' is not"):
        to_iob2([Sentence(["a"], ["PER"], line=1)], "iob2", "x")


@pytest.mark.parametrize(
    "scheme, tags",
    [
        ("iob1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]),
        ("iob2", ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]),
        ("bioes", ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "S-ORG"]),
    ],
)
def test_schemes_convert_to_the_same_iob2_entities(scheme: str, tags: list[str]) -> None:
    sentence = Sentence(list("abcdef"), tags)
    assert detect_scheme([sentence]) == scheme
    converted = to_iob2([sentence], scheme, "x")[0].tags
    assert converted == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    assert spans(converted) == [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG")]


def test_raw_text_words_keep_their_offsets() -> None:
    text = "John Smith's U.S.-based firm paid 1,000 euros (3.5%) in Paris."
    sentence = split_words(text)
    assert all(text[a:b] == w for w, (a, b) in zip(sentence.tokens, sentence.offsets or [], strict=True))
    assert sentence.tokens == [
        "John",
        "Smith",
        "'s",
        "U.S.-based",
        "firm",
        "paid",
        "1,000",
        "euros",
        "(",
        "3.5",
        "%",
        ")",
        "in",
        "Paris",
        ".",
    ]


# --- windows -----------------------------------------------------------------------------------------------
class PieceTokenizer:
    """Words split into pieces of up to 3 characters: long words make several pieces (as a
    ``tokenizers.Tokenizer``'s ``encode_batch`` gives them)."""

    def encode_batch(self, words: list[str], add_special_tokens: bool = False) -> list[SimpleNamespace]:
        return [SimpleNamespace(ids=[100 + len(w[i : i + 3]) for i in range(0, len(w), 3)]) for w in words]


def piece_layout(max_length: int) -> WordPieces:
    return WordPieces(PieceTokenizer(), max_length, cls_id=1, sep_id=2, unk_id=3)


def test_a_1000_word_sentence_gets_overlapping_windows_and_every_word_a_place() -> None:
    rng = random.Random(0)
    words = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 8))) for _ in range(1000)]
    pieces = piece_layout(32)
    layout = pieces.layouts([Sentence(words)])[0]
    own = pieces.pieces(words)
    assert len(layout.windows) > 1 and all(len(w) <= 32 for w in layout.windows)
    for i, word_pieces in enumerate(own):
        window = layout.windows[layout.word_window[i]]
        assert window[layout.word_start[i] : layout.word_end[i]] == word_pieces
        assert 0 < layout.word_start[i] < layout.word_end[i] < len(window)  # never [CLS] or [SEP]
    # Each word is read away from a window's edge whenever another window gives it more context.
    inner = [
        min(layout.word_start[i] - 1, len(layout.windows[layout.word_window[i]]) - 1 - layout.word_end[i])
        for i in range(len(words))
    ]
    assert sorted(inner)[len(inner) // 2] >= 5


def test_document_context_fills_the_window_with_neighbours() -> None:
    sentences = [Sentence(["aaa", "bbb"], document=1), Sentence(["cc"], document=1), Sentence(["dd"], document=2)]
    pieces = piece_layout(16)
    alone, in_doc = pieces.layouts(sentences), pieces.layouts(sentences, "document")
    assert alone[1].windows == [[1, 102, 2]]
    assert in_doc[1].windows == [[1, 103, 103, 102, 2]]  # "aaa bbb" before it; nothing of document 2
    assert (in_doc[1].word_start, in_doc[1].word_end) == ([3], [4])
    assert in_doc[2].windows == [[1, 102, 2]]


# --- the model -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_encoder: str) -> BertLSTMTagger:
    tokens, tags = make_tagged(240, 0)
    tagger = BertLSTMTagger(encoder=tiny_encoder, crf=True, epochs=6, lstm_units=16, lr=1e-2, progress=False)
    return tagger.fit(tokens, tags)


def test_tagger_learns_and_decodes_valid_entities(trained: BertLSTMTagger) -> None:
    tokens, tags = make_tagged(60, 1)
    report = trained.evaluate(tokens, tags)
    assert report["micro_f1"] > 0.9, report
    assert set(report["per_label"]) == {"PER", "LOC"} and report["labels"] == ["LOC", "PER", "O"]
    for row in trained.predict(tokens):
        for prev, tag in zip(["O", *row], row, strict=False):
            assert not tag.startswith("I-") or prev[2:] == tag[2:]  # the CRF's constraints hold


def test_padding_never_changes_a_sentence(trained: BertLSTMTagger) -> None:
    model = trained.model_
    short, long = ["the", "actor"], ["scene", "story", "was", "good"] * 5
    alone = trained._dataset([Sentence(short)], "x")
    batch = trained._dataset([Sentence(short), Sentence(long)], "x")
    with torch.no_grad():
        a = model(**as_tensors(alone.collate([alone[0]]))).logits[0]
        b = model(**as_tensors(batch.collate([batch[0], batch[1]]))).logits[0, : len(short)]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_save_load_round_trip_and_long_sentences(trained: BertLSTMTagger, tmp_path: Path) -> None:
    folder = trained.save_pretrained(tmp_path / "tagger")
    loaded = BertLSTMTagger.from_pretrained(folder)
    tokens, _ = make_tagged(20, 2)
    assert loaded.predict(tokens) == trained.predict(tokens)
    long = [random.Random(3).choice(WORDS) for _ in range(1000)]  # longer than 128 pieces: several windows
    tags = loaded.predict([long])[0]
    assert len(tags) == 1000 and all(t == "B-PER" for w, t in zip(long, tags, strict=True) if w == "actor")
    spans_ = loaded.predict_spans(["The ACTOR was in scene story.", ""])
    assert spans_[1] == [] and {"text": "ACTOR", "type": "PER", "start": 4, "end": 9} in spans_[0]
    assert {"text": "scene story", "type": "LOC", "start": 17, "end": 28} in spans_[0]


@pytest.mark.parametrize("pooling", ["mean", "first-last"])
@pytest.mark.parametrize("layers", ["concat-last-4", "scalar-mix"])
def test_word_pooling_and_layers(tiny_encoder_4: str, pooling: str, layers: str) -> None:
    tokens, tags = make_tagged(40, 0)
    tagger = BertLSTMTagger(
        encoder=tiny_encoder_4, word_pooling=pooling, layers=layers, epochs=1, lstm_units=8, progress=False
    ).fit(tokens, tags)
    assert [len(t) for t in tagger.predict(tokens[:5])] == [len(t) for t in tokens[:5]]


def test_mean_pooling_averages_a_words_pieces(trained: BertLSTMTagger) -> None:
    pieces = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    model = trained.model_
    old = model.config
    model.config = type(old)(**{**old.as_kwargs(), "word_pooling": "mean"})
    try:
        words = model.words(pieces, torch.tensor([[1, 0]]), torch.tensor([[1, 2]]), torch.tensor([[4, 3]]))
    finally:
        model.config = old
    torch.testing.assert_close(words[0, 0], pieces[1, 1:4].mean(0))
    torch.testing.assert_close(words[0, 1], pieces[0, 2])


def test_cache_and_no_cache_train_alike(tiny_encoder: str) -> None:
    tokens, tags = make_tagged(60, 0)
    kwargs = {"encoder": tiny_encoder, "epochs": 2, "lstm_units": 8, "progress": False}
    cached = BertLSTMTagger(**kwargs, cache_dtype="float32").fit(tokens, tags)
    direct = BertLSTMTagger(**kwargs, cache=False).fit(tokens, tags)
    for a, b in zip(cached.history_, direct.history_, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_finetune_and_linear_head(tiny_encoder: str) -> None:
    tokens, tags = make_tagged(40, 0)
    tagger = BertLSTMTagger(encoder=tiny_encoder, mode="finetune", lstm_layers=0, crf=True, epochs=1, progress=False)
    trained = tagger.fit(tokens, tags).model_.encoder.state_dict()
    original = load_encoder(tiny_encoder)[0].state_dict()
    assert tagger.model_.lstm is None  # a linear head straight on the encoder
    assert not torch.equal(
        trained["encoder.layer.0.attention.self.query.weight"], original["encoder.layer.0.attention.self.query.weight"]
    )
    assert len(tagger.predict(tokens[:3])) == 3


# --- the command line ----------------------------------------------------------------------------------------
def test_cli_train_evaluate_predict(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = write_conll(tmp_path / "train.conll", *make_tagged(200, 0))
    dev = write_conll(tmp_path / "dev.conll", *make_tagged(40, 1))
    out = tmp_path / "model"
    args = ["train", "--task", "tag", "--train", str(train), "--dev", str(dev), "--test", str(dev)]
    args += ["--encoder", tiny_encoder, "--epochs", "4", "--lstm-units", "16", "--lr", "0.01", "--crf"]
    assert cli.main([*args, "--output", str(out), "--no-progress", "-q", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_micro_f1"] > 0.8
    assert cli.main(["report", str(out), "--plots"]) == 0 and (out / "confusion_matrix.png").is_file()
    assert cli.main(["evaluate", "--model", str(out), "--data", str(dev), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_f1"] == pytest.approx(metrics["test_micro_f1"])
    assert cli.main(["evaluate", "--model", str(out), "--data", str(dev)]) == 0
    assert "entity micro-F1" in capsys.readouterr().out
    assert cli.main(["report", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "| crf | True |" in summary and "## Test, per entity type" in summary
    assert cli.main(["predict", "--model", str(out), "--text", "An actor in scene story."]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["entities"][0] == {"text": "actor", "type": "PER", "start": 3, "end": 8}
    conll_out = tmp_path / "pred.conll"
    assert cli.main(["predict", "--model", str(out), "--input", str(dev), "--output", str(conll_out)]) == 0
    predicted = read_tagged(conll_out)
    assert [s.tokens for s in predicted] == [s.tokens for s in read_tagged(dev)]


def test_cli_bad_tag_file_is_one_error_line(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("a NN O\nb NN X-PER\n")
    code = cli.main(
        ["train", "--task", "tag", "--train", str(bad), "--encoder", tiny_encoder, "--output", str(tmp_path / "m")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "line 2: tag 'X-PER'" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


# --- serving and export -------------------------------------------------------------------------------------
def test_numpy_viterbi_matches_the_crf(trained: BertLSTMTagger) -> None:
    crf = trained.model_.crf
    emissions = torch.randn(6, 9, len(trained.tags_)) * 3
    counts = torch.tensor([9, 1, 4, 7, 2, 9])
    mask = torch.arange(9) < counts.unsqueeze(1)
    scores = [t.detach().numpy() for t in crf._scores(constrained=True)]
    got = viterbi(emissions.numpy(), counts.numpy(), *scores)
    assert got.tolist() == crf.decode(emissions, mask).tolist()


def test_server_answers_entities(trained: BertLSTMTagger, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    folder = trained.save_pretrained(tmp_path / "tagger")
    with TestClient(create_app(ServeConfig(model=str(folder), max_wait_ms=0))) as client:
        answer = client.post("/predict", json={"texts": ["An actor in scene story.", "nothing here"]})
        meta = client.get("/metadata").json()
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["predictions"]
    assert {"text": "actor", "type": "PER", "start": 3, "end": 8} in first["entities"]
    assert second == {"entities": []}
    assert meta["task"] == "tagging" and meta["labels"]["names"] == trained.tags_


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_onnx_export_decodes_like_torch(trained: BertLSTMTagger, tmp_path: Path, quantize: str | None) -> None:
    pytest.importorskip("onnxruntime")
    from bertlstm.deploy.export import export_onnx

    folder = trained.save_pretrained(tmp_path / "tagger")
    path = export_onnx(folder, tmp_path / "tagger.onnx", quantize)
    onnx, torch_backend = open_model(str(path)), open_model(str(folder), backend="torch")
    texts = ["An actor in scene story.", "the actor was good, the scene story was not " * 40, ""]
    tokens, _ = make_tagged(30, 4)
    if quantize is None:  # the same tags and entities as PyTorch, long texts (several windows) included
        assert onnx.predict_spans(texts) == torch_backend.predict_spans(texts)
        assert onnx.predict_tags([Sentence(t) for t in tokens]) == trained.predict(tokens)
    else:  # int8 moves the scores a little; this model's easy entities survive it
        gold = make_tagged(30, 4)[1]
        assert tag_metrics(gold, onnx.predict_tags([Sentence(t) for t in tokens]))["micro_f1"] > 0.9


def test_cli_predict_through_an_exported_tagger(trained: BertLSTMTagger, tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    folder = trained.save_pretrained(tmp_path / "tagger")
    assert cli.main(["export", "--model", str(folder), "--output", str(tmp_path / "t.onnx"), "-q"]) == 0
    assert cli.main(["predict", "--model", str(tmp_path / "t.onnx"), "--text", "An actor in scene story."]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["entities"][0] == {"text": "actor", "type": "PER", "start": 3, "end": 8}


# --- the real encoder on CoNLL-2003 --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_conll2003_frozen_tagger_with_the_default_encoder(tmp_path: Path) -> None:
    """A quick CoNLL-2003 run (2,000 training sentences, 2 epochs): far from the full figures in
    BENCHMARKS.md, but a broken tagger scores near 0."""
    folder = shared_data() / "conll2003"
    if not (folder / "train.txt").is_file():
        pytest.skip(f"CoNLL-2003 not found in {folder} (see ../shared/data/README)")
    train, dev = read_tagged(folder / "train.txt")[:2000], read_tagged(folder / "dev.txt")[:600]
    tagger = BertLSTMTagger(crf=True, epochs=2, progress=False).fit(train, None, dev)
    assert tagger.metrics_["dev_micro_f1"] > 0.55, tagger.history_
    report = tagger.evaluate(dev)
    assert report["micro_f1"] == pytest.approx(tagger.metrics_["dev_micro_f1"])
    assert set(report["per_label"]) == {"LOC", "MISC", "ORG", "PER"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_tagger_folder_runs_on_its_cached_graph(
    trained: BertLSTMTagger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    """The cache's graphs (fused by onnxruntime, and quantized) keep every input the tagger's batches carry."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("BERTLSTM_GRAPHS", str(tmp_path / "graphs"))
    folder = trained.save_pretrained(tmp_path / "tagger")
    cached = open_model(str(folder), precision=precision)
    assert (cached.engine.kind, cached.engine.precision) == ("onnx", precision)
    tokens, gold = make_tagged(30, 4)
    predicted = cached.predict_tags([Sentence(t) for t in tokens])
    if precision == "fp32":
        assert predicted == trained.predict(tokens)
    else:
        assert tag_metrics(gold, predicted)["micro_f1"] > 0.9
