"""Finding encoders: packaged names, folders, hub ids, and the longest text each can read."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import BertConfig, RobertaConfig

from bertlstm import BertLSTMError
from bertlstm.core.encoder_names import check_max_length, position_limit, resolve_encoder


def test_packaged_names_resolve_to_the_installed_model() -> None:
    folder = Path(resolve_encoder("minilm"))
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert resolve_encoder("sentence-transformers/all-MiniLM-L6-v2") == str(folder)  # configs written anywhere


def test_folders_hub_ids_and_mistakes(tiny_encoder: str, tmp_path: Path) -> None:
    assert resolve_encoder(tiny_encoder) == tiny_encoder
    assert resolve_encoder("some-org/some-bert") == "some-org/some-bert"  # a hub id, as given
    with pytest.raises(BertLSTMError, match="does not exist"):
        resolve_encoder(str(tmp_path / "nope"))
    with pytest.raises(BertLSTMError, match="has no config.json"):
        resolve_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text('{"format_version": 3, "model": {}}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "encoder").mkdir()  # what bertlstm writes: a model folder, whose encoder is inside it
    with pytest.raises(BertLSTMError, match="is a bertlstm model folder, not an encoder"):
        resolve_encoder(str(tmp_path))


def test_position_limits() -> None:
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512  # ids start at 2
    assert position_limit(object()) is None


def test_max_length_is_checked_against_the_encoder(tiny_encoder: str) -> None:
    check_max_length(tiny_encoder, 128)
    with pytest.raises(BertLSTMError, match=r"`max_length` 129 is beyond .* \(128 word pieces\)"):
        check_max_length(tiny_encoder, 129)
    check_max_length("minilm", 512)
    with pytest.raises(BertLSTMError, match="512 word pieces"):
        check_max_length("minilm", 513)
