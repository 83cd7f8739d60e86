"""Shared fixtures: a tiny random BERT written to a temp folder (no network), fixed seeds, toy data."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

WORDS = (
    "good great fine lovely happy excellent superb nice bad awful terrible poor sad horrible dull boring "
    "movie film plot actor scene story the a was is it this very not really quite so"
).split()
POSITIVE, NEGATIVE = WORDS[:8], WORDS[8:16]


torch.set_num_threads(1)  # tiny models gain nothing from threads; leaves a core for whatever else runs


@pytest.fixture(scope="session", autouse=True)
def _session_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module- and session-scoped fixtures (a trained model shared by a file's tests) run before the per-test
    fixture below: their feature cache goes to a temp folder too."""
    patch = pytest.MonkeyPatch()
    patch.setenv("BERTLSTM_CACHE", str(tmp_path_factory.mktemp("session-feature-cache")))
    patch.setenv("BERTLSTM_GRAPHS", str(tmp_path_factory.mktemp("session-graphs")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The feature cache of every test lives in a fresh temp folder, never in the user's cache."""
    monkeypatch.setenv("BERTLSTM_CACHE", str(tmp_path_factory.mktemp("feature-cache")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


class Said(logging.Handler):
    """What the ``bertlstm`` logger said during a test, whether the CLI has set up its own handler or not."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture
def logs() -> Iterator[Said]:
    logger, handler = logging.getLogger("bertlstm"), Said()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def write_tiny_bert(folder: Path, layers: int) -> str:
    """A random BERT (hidden 32) with a small word-level vocabulary, saved to ``folder``."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,  # as long as the default max_length
        hidden_dropout_prob=0.1,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a random 2-layer BERT."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), layers=2)


@pytest.fixture(scope="session")
def tiny_encoder_4(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a random 4-layer BERT, for what reads the last four layers."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert-4"), layers=4)


def make_sentiment(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Toy sentences whose label is set by which sentiment words they hold; lengths vary."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        cue = POSITIVE if label == "pos" else NEGATIVE
        filler = [rng.choice(WORDS[16:]) for _ in range(rng.randint(1, 8))]
        words = filler + [rng.choice(cue) for _ in range(rng.randint(1, 3))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def make_multilabel(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Toy texts whose label set says which cue words they hold: pos, neg, cinema (movie/film)."""
    texts, _ = make_sentiment(n, seed)
    labels = []
    for text in texts:
        words = set(text.split())
        cues = (("pos", set(POSITIVE)), ("neg", set(NEGATIVE)), ("cinema", {"movie", "film"}))
        labels.append(",".join(name for name, cue in cues if words & cue))
    return texts, labels


PLAIN = [w for w in WORDS if w not in ("actor", "scene", "story")]


def make_tagged(n: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences where "actor" is a person and "scene story" a place: learnable from the words alone."""
    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        words, labels = [], []
        for _ in range(rng.randint(3, 10)):
            r = rng.random()
            if r < 0.15:
                words, labels = [*words, "actor"], [*labels, "B-PER"]
            elif r < 0.3:
                words, labels = [*words, "scene", "story"], [*labels, "B-LOC", "I-LOC"]
            else:
                words, labels = [*words, rng.choice(PLAIN)], [*labels, "O"]
        tokens.append(words)
        tags.append(labels)
    return tokens, tags


def write_conll(path: Path, tokens: list[list[str]], tags: list[list[str]]) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, labels in zip(tokens, tags, strict=True):
        lines += [f"{w} NN O {t}" for w, t in zip(words, labels, strict=True)] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def toy_data() -> tuple[list[str], list[str]]:
    return make_sentiment(160, seed=1)


@pytest.fixture
def toy_files(tmp_path: Path) -> dict[str, Path]:
    """train.csv / dev.csv / test.csv of toy sentiment data."""
    import csv

    files = {}
    for name, n, seed in (("train", 160, 1), ("dev", 40, 2), ("test", 40, 3)):
        path = tmp_path / f"{name}.csv"
        texts, labels = make_sentiment(n, seed)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels, strict=True))
        files[name] = path
    return files


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    return repo_root().parent / "shared" / "data"


def cli_train(encoder: str, output: Path, *args: object) -> int:
    """``bertlstm train`` in-process on CPU without progress bars; ``args`` are further options (any type)."""
    from bertlstm.cli import main

    base = ["train", "--encoder", encoder, "--output", str(output), "--no-progress", "--device", "cpu"]
    return main(base + [str(a) for a in args])


# --- a trained model folder, and one error line: what the safety tests share ---------------------------------
@pytest.fixture(scope="module")
def model_dir(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained model folder; tests that damage it work on a copy (:func:`copy_of`)."""
    folder = tmp_path_factory.mktemp("trained")
    files = {name: write_csv(folder / f"{name}.csv", n, seed) for name, n, seed in (("train", 80, 1), ("test", 20, 3))}
    code = cli_train(tiny_encoder, folder / "model", "--train", files["train"], "--epochs", 1, "--lstm-units", 8)
    assert code == 0
    return folder / "model"


def copy_of(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


def one_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """The captured stderr is one ``error:`` line that contains every fragment; returns stdout."""
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # progress lines may come first
    assert len(lines) == 1 and err.strip().endswith(lines[0]) and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return out


def write_csv(path: Path, n: int = 40, seed: int = 1) -> Path:
    texts, labels = make_sentiment(n, seed)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def train(tiny_encoder: str, output: Path | str, *args: object) -> int:
    return cli_train(tiny_encoder, Path(output), "--epochs", 1, "--lstm-units", 8, *args)
