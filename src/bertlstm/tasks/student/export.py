"""The student as an exportable graph: token ids (B, T) and mask (B, T), int64 -> logits (B, C), its LSTM as a
:class:`~bertlstm.core.masked_lstm.MaskedLSTM` (exact on padded batches, as packing does not export)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.export_graph import ExportGraph
from ...core.masked_lstm import MaskedLSTM
from ..classify.export import INPUTS
from .model import StudentModel


class StudentExport(nn.Module):
    """The student with a :class:`MaskedLSTM` in place of its packed LSTM. A frozen embedding table holds
    float16 values (:class:`StudentModel`): the graph keeps it in float16 too, half the bytes, and widens the
    rows it looks up, which gives the same numbers."""

    table: Tensor  # (V, H) float16, when frozen

    def __init__(self, model: StudentModel) -> None:
        super().__init__()
        self.model = model
        self.lstm = MaskedLSTM(model.lstm)
        self.half_table = not model.config.train_embeddings
        if self.half_table:
            self.register_buffer("table", model.embeddings.weight.detach().half())  # (V, H)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.half_table:  # dropout is off in eval
            features, lengths = F.embedding(input_ids, self.table).float(), attention_mask.sum(dim=1)  # (B, T, H)
        else:
            features, lengths = self.model.lstm_inputs(input_ids, attention_mask)  # (B, T, H), (B,)
        return self.model.head(self.lstm(features, lengths))


def export_graph(model: StudentModel) -> ExportGraph:
    dynamic = dict.fromkeys(INPUTS, {0: "batch", 1: "sequence"})
    return ExportGraph(StudentExport(model).eval(), INPUTS, "logits", ("batch", "labels"), dynamic)
