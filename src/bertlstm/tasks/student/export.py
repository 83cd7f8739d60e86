"""The student as an exportable graph: token ids (B, T) and mask (B, T), int64 -> logits (B, C), its LSTM as a
:class:`~bertlstm.core.masked_lstm.MaskedLSTM` (exact on padded batches, as packing does not export)."""

from __future__ import annotations

from torch import Tensor, nn

from ...core.export_graph import ExportGraph
from ...core.masked_lstm import MaskedLSTM
from ..classify.export import INPUTS
from .model import StudentModel


class StudentExport(nn.Module):
    """The student with a :class:`MaskedLSTM` in place of its packed LSTM."""

    def __init__(self, model: StudentModel) -> None:
        super().__init__()
        self.model = model
        self.lstm = MaskedLSTM(model.lstm)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        features, lengths = self.model.lstm_inputs(input_ids, attention_mask)  # (B, T, H), (B,)
        return self.model.head(self.lstm(features, lengths))  # dropout is off in eval


def export_graph(model: StudentModel) -> ExportGraph:
    dynamic = dict.fromkeys(INPUTS, {0: "batch", 1: "sequence"})
    return ExportGraph(StudentExport(model).eval(), INPUTS, "logits", ("batch", "labels"), dynamic)
