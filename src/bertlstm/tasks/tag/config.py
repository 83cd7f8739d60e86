"""The tagger's settings: its model (the shared encoder settings, with a tagger's defaults and its own word
pooling, CRF and context) and its data files (CoNLL or JSON Lines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ...core.config import DataConfig, EncoderSettings, TrainConfig
from ...core.errors import BertLSTMError
from ...core.settings import setting

WordPooling = Literal["first", "mean", "first-last"]
Context = Literal["sentence", "document"]
TagScheme = Literal["auto", "iob1", "iob2", "bioes"]


@dataclass(frozen=True)
class TaggerConfig(EncoderSettings):
    """Everything needed to rebuild a BERT→BiLSTM→CRF tagger (besides its tags)."""

    mode: Literal["frozen", "finetune"] = setting("frozen", "recipe: frozen encoder, or finetune it")
    lstm_units: int = setting(128, "hidden units of each LSTM direction")
    lstm_layers: int = setting(2, "stacked LSTM layers; 0: a linear head on the encoder")
    bidirectional: bool = setting(True, "run the LSTM over real words in both directions")
    max_length: int = setting(128, "word pieces per encoder window; longer sentences get overlapping windows")
    word_pooling: WordPooling = setting("first", "a word is its first word piece, their mean, or first+last")
    crf: bool = setting(False, "a linear-chain CRF over the tags (Viterbi decoding with valid moves)")
    context: Context = setting("sentence", "encode each sentence alone, or amid its document's sentences")

    min_lstm_layers: ClassVar[int] = 0  # a linear head on the encoder: the usual fine-tuning control
    min_max_length: ClassVar[int] = 8

    def check_training(self, training: TrainConfig) -> None:
        if training.metric == "macro_f1":
            raise BertLSTMError(
                "`metric` for tagging is micro_f1 (entities, the default) or accuracy (words)", "metric"
            )


@dataclass(frozen=True)
class TagData(DataConfig):
    """Tagged sentences: CoNLL column files or JSON Lines, and how to read their tags."""

    train: str | None = setting(None, "training data (CoNLL columns, or JSON Lines of tokens and tags)", metavar="FILE")
    tag_column: int = setting(-1, "the CoNLL column holding the tag (0 is the token; -1 the last)")
    text_column: str | None = setting(None, "tables of texts to tag: the column holding the text (default: found)")
    tag_scheme: TagScheme = setting("auto", "how the files' tags are written (auto: detected)")

    def __post_init__(self) -> None:
        self.check_choices()
        if self.tag_column == 0 or not isinstance(self.tag_column, int):
            raise BertLSTMError(
                "`tag_column` must be a column after the token's: 1, 2, ... or -1 (the last)", "tag_column"
            )
