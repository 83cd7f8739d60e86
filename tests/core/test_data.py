"""Reading files, checking them, and batching with per-batch padding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bertlstm.core.batching import LengthGroupedBatches, pad_batch
from bertlstm.core.data import read_table
from bertlstm.core.errors import BertLSTMError
from bertlstm.tasks.classify.data import load_labelled, split_dev

ROWS = pd.DataFrame({"sentence": ["a fine film", "a dull film", "so good"], "label": [1, 0, 1]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".csv.gz"])
def test_every_format_reads_the_same(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        ROWS.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        ROWS.to_parquet(path)
    else:
        ROWS.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    texts, labels = load_labelled(path)  # columns auto-detected: sentence, label
    assert texts == ["a fine film", "a dull film", "so good"]
    assert labels == ["1", "0", "1"]


def test_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({"body": ["x y", "z"], "y": ["a", "b"]}).to_csv(path, index=False)
    assert load_labelled(path, "body", "y") == (["x y", "z"], ["a", "b"])
    with pytest.raises(BertLSTMError, match="cannot tell which column holds the text"):
        load_labelled(path)
    with pytest.raises(BertLSTMError, match="no label column 'nope'; columns are: body, y"):
        load_labelled(path, "body", "nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "could not read"),
        (b"text,label\n", "no rows"),
        (b"text,label\nfine,1\n,0\n", r"empty or non-text text in 1 row\(s\) \(file line 3\)"),
        (b"text,label\nfine,1\nok,\n", "empty or non-text label"),
        (b"text,label\n\xff\xfe bad,1\n", "not valid UTF-8"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(BertLSTMError, match=message):
        load_labelled(path)


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(BertLSTMError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(BertLSTMError, match="unknown file type"):
        read_table(tmp_path / "d.xlsx")


def test_dev_split_is_stratified_and_seeded() -> None:
    texts = [f"t{i}" for i in range(100)]
    labels = ["a"] * 80 + ["b"] * 20
    tr_t, dv_t, tr_l, dv_l = split_dev(texts, labels, 0.1, seed=0)
    assert len(dv_t) == 10 and dv_l.count("b") == 2 and not set(tr_t) & set(dv_t)
    assert split_dev(texts, labels, 0.1, seed=0)[1] == dv_t


def test_pad_batch_pads_to_the_longest_in_the_batch() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_length_grouped_batches_cover_everything_once_and_group_lengths() -> None:
    lengths = [(i * 37) % 120 + 3 for i in range(1000)]
    sampler = LengthGroupedBatches(lengths, batch_size=32, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(sampler) == 32
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)  # little compute goes to padding
    sampler.epoch = 1
    assert list(sampler) != batches  # a new order every epoch ...
    sampler.epoch = 0
    assert list(sampler) == batches  # ... that depends only on seed and epoch


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_multi_label_cells_as_lists_or_joined(tmp_path: Path, suffix: str) -> None:
    rows = pd.DataFrame({"text": ["so glad", "sad and angry"], "labels": [["joy"], ["sadness", " anger"]]})
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        rows.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        rows.to_parquet(path)
    else:  # CSV cannot hold lists: the labels are joined by the separator
        rows.assign(labels=["joy", "sadness| anger"]).to_csv(path, index=False)
    separator = "|" if suffix == ".csv" else ","
    assert load_labelled(path, label_separator=separator) == (
        ["so glad", "sad and angry"],
        [["joy"], ["sadness", "anger"]],
    )


def test_list_labels_need_multi_label_and_names(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    pd.DataFrame({"text": ["a", "b"], "labels": [["x"], ["y", "z"]]}).to_json(path, orient="records", lines=True)
    with pytest.raises(BertLSTMError, match="'labels' column holds lists of labels; .* set `multi_label`"):
        load_labelled(path)
    pd.DataFrame({"text": ["a", "b"], "labels": [["x"], []]}).to_json(path, orient="records", lines=True)
    with pytest.raises(BertLSTMError, match=r"empty or non-text labels in 1 row\(s\) \(file line 2\)"):
        load_labelled(path, label_separator=",")
