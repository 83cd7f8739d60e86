"""The tagger as an exportable graph: windows of token ids and mask (Nw, T), and per word (B, W) its window
and piece span, with each sentence's word count (B,), int64 -> emission scores (B, W, C); its BiLSTM as a
:class:`~bertlstm.core.masked_lstm.MaskedLSTM`. Decoding (Viterbi over the CRF's scores) runs after the graph,
in :class:`~.predictor.TaggerPredictor`."""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from ...core.export_graph import ExportGraph
from ...core.masked_lstm import MaskedLSTM
from .model import BertTaggerModel

INPUTS = ("input_ids", "attention_mask", "word_window", "word_start", "word_end", "word_counts")


class TaggerExportModule(nn.Module):
    """The tagger with a :class:`MaskedLSTM` in place of its packed BiLSTM."""

    def __init__(self, model: BertTaggerModel) -> None:
        super().__init__()
        self.model = model
        self.lstm = MaskedLSTM(model.lstm) if model.lstm is not None else None

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        word_window: Tensor,
        word_start: Tensor,
        word_end: Tensor,
        word_counts: Tensor,
    ) -> Tensor:
        words = self.model.word_states(self.model.encode(input_ids, attention_mask), word_window, word_start, word_end)
        if self.lstm is not None:
            words = self.lstm.outputs(words, word_counts)  # (B, W, 2U)
        return self.model.head(words)  # (B, W, C)


def real_words(batch: dict[str, np.ndarray]) -> np.ndarray:
    """(B, W): the words of each sentence, not their padding."""
    return np.arange(batch["word_start"].shape[1]) < batch["word_counts"][:, None]


def export_graph(model: BertTaggerModel) -> ExportGraph:
    windows, words = {0: "windows", 1: "pieces"}, {0: "sentences", 1: "words"}
    dynamic = {
        **dict.fromkeys(INPUTS[:2], windows),
        **dict.fromkeys(INPUTS[2:5], words),
        "word_counts": {0: "sentences"},
    }
    module = TaggerExportModule(model).eval()
    return ExportGraph(module, INPUTS, "emissions", ("sentences", "words", "tags"), dynamic, real_words)
