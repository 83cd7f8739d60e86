"""Labels: names learnt from the training data, targets, class weights, decisions and their JSON form."""

from __future__ import annotations

import numpy as np
import pytest

from bertlstm import BertLSTMError, Labels


def test_names_sorted_numerically_or_alphabetically_and_one_class_refused() -> None:
    assert Labels.from_training(["10", "2", "1", "2"]).names == ("1", "2", "10")
    assert Labels.from_training(["pos", "neg"]).names == ("neg", "pos")
    assert Labels.from_training([["b", "a"], ["c"]], multi_label=True).names == ("a", "b", "c")
    with pytest.raises(BertLSTMError, match="only one class"):
        Labels.from_training(["pos", "pos"])


def test_clean_reads_numbers_as_numbers_and_warns_about_missing_like_names() -> None:
    with pytest.warns(UserWarning, match="'1.0' as '1'"):
        assert Labels.clean([1, "1.0", 0.0, "0"], multi_label=False) == ["1", "1", "0", "0"]
    with pytest.warns(UserWarning, match="'NaN' look like missing values"):
        assert Labels.clean(["NaN", "pos"], multi_label=False) == ["NaN", "pos"]
    assert Labels.clean([("a", "b"), ["c"]], multi_label=True) == [["a", "b"], ["c"]]
    with pytest.raises(BertLSTMError, match="must be a list of names"):
        Labels.clean(["a,b"], multi_label=True)


def test_unseen_labels_are_left_out_with_a_warning() -> None:
    labels = Labels(("neg", "pos"))
    with pytest.warns(UserWarning, match=r"1 row\(s\) have labels never seen in training \('maybe'\)"):
        assert labels.encode(["pos", "maybe", "neg"], "dev data") == ([1, 0], [0, 2])
    with pytest.raises(BertLSTMError, match="no row has a label the model knows"):
        labels.check_known(["maybe"], "test.csv")
    multi = Labels(("a", "b", "c"), multi_label=True)
    with pytest.warns(UserWarning, match="never seen in training are ignored: 'z'"):
        assert multi.encode([["a", "z"], ["c"]], "dev")[0] == [[1, 0, 0], [0, 0, 1]]


def test_class_weights() -> None:
    labels = Labels(("a", "b"))
    np.testing.assert_allclose(labels.class_weights("balanced", [0, 0, 0, 1]), [4 / 6, 4 / 2])
    np.testing.assert_allclose(labels.class_weights((1.0, 5.0), [0, 1]), [1.0, 5.0])
    assert labels.class_weights(None, [0, 1]) is None
    with pytest.raises(BertLSTMError, match="3 class weights for 2 classes"):
        labels.class_weights((1.0, 5.0, 2.0), [0, 1])
    multi = Labels(("a", "b"), multi_label=True)
    np.testing.assert_allclose(multi.class_weights("balanced", [[1, 0], [1, 1], [0, 0], [1, 0]]), [1 / 3, 3.0])


def test_decode_with_and_without_thresholds() -> None:
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert Labels(("neg", "pos")).decode(proba) == ["pos", "neg"]
    multi = Labels(("a", "b"), multi_label=True)
    assert multi.decode(proba) == [["b"], ["a"]]  # 0.5 when untuned
    assert multi.tuned([0.1, 0.3]).decode(proba) == [["a", "b"], ["a", "b"]]


def test_json_round_trip_and_bad_sections() -> None:
    labels = Labels(("a", "b", "c"), multi_label=True, thresholds=(0.2, 0.5, 0.35))
    assert Labels.from_dict(labels.to_dict()) == labels
    with pytest.raises(BertLSTMError, match="do not fit together"):
        Labels.from_dict({"names": ["a", "b"], "thresholds": [0.5]})
    with pytest.raises(BertLSTMError, match="not a list of label names"):
        Labels.from_dict({"thresholds": [0.5]})
