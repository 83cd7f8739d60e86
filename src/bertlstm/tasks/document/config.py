"""The document classifier's settings: the classifier's, with how a document is cut into windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ...core.errors import BertLSTMError
from ...core.settings import check_int, setting
from ..classify.config import LongText, ModelConfig


@dataclass(frozen=True)
class DocumentConfig(ModelConfig):
    """Everything needed to rebuild a BERT→LSTM document classifier: an LSTM over the vectors of a document's
    windows (besides its labels)."""

    long_text: LongText = setting("chunks", "chunks: read each document whole, in windows of chunk_length pieces")
    chunk_length: int | None = setting(
        None, "word pieces per window, [CLS] and [SEP] included (default: max_length)", metavar="N"
    )
    chunk_stride: int = setting(0, "word pieces that consecutive windows share (overlap)")
    chunk_pooling: Literal["mean", "cls"] = setting("mean", "a window's vector: its pieces' mean, or its [CLS]")
    max_chunks: int | None = setting(
        None,
        "finetune: at most this many windows per document while the encoder trains, the first and last halves "
        "(default: all). Prediction always reads every window",
        metavar="N",
    )

    long_texts: ClassVar[tuple[str, ...]] = ("chunks",)

    def __post_init__(self) -> None:
        super().__post_init__()
        window = self.window
        check_int(window, "chunk_length", 3)
        if window > self.max_length:
            raise BertLSTMError(
                f"`chunk_length` {window} is longer than `max_length` {self.max_length}", "chunk_length"
            )
        check_int(self.chunk_stride, "chunk_stride", 0)
        if self.chunk_stride > (window - 2) // 2:
            raise BertLSTMError(
                f"`chunk_stride` {self.chunk_stride} must be at most half a window's pieces ({(window - 2) // 2})",
                "chunk_stride",
            )
        if self.max_chunks is not None:
            check_int(self.max_chunks, "max_chunks", 1)
        if self.mode == "pooled":
            raise BertLSTMError("`mode` pooled is one vector per text; a document's windows are pooled already", "mode")

    @property
    def window(self) -> int:
        """Word pieces per window, [CLS] and [SEP] included."""
        return self.chunk_length or self.max_length
