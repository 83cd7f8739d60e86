"""The document classifier as two exportable graphs, joined by its predictor: the window encoder (windows of
ids and mask (Nw, T) -> vectors (Nw, D)), and the document reader (documents' window vectors (B, W, D) with
their counts (B,) -> logits (B, C)), whose LSTM is a :class:`~bertlstm.core.masked_lstm.MaskedLSTM` (exact on
padded batches, as packing does not export)."""

from __future__ import annotations

from torch import Tensor, nn

from ...core.export_graph import ExportGraph
from ...core.masked_lstm import MaskedLSTM
from .model import BertLSTMDocumentModel, WindowEncoder
from .predictor import WINDOWS_GRAPH


class DocumentReader(nn.Module):
    """The model's LSTM (as a :class:`MaskedLSTM`) and head over documents' window vectors."""

    def __init__(self, model: BertLSTMDocumentModel) -> None:
        super().__init__()
        self.model = model
        self.lstm = MaskedLSTM(model.lstm)

    def forward(self, vectors: Tensor, doc_counts: Tensor) -> Tensor:
        if self.model.scalar_mix is not None:
            vectors = self.model.scalar_mix(vectors)  # (B, W, H)
        return self.model.head(self.lstm(vectors, doc_counts))  # dropout is off in eval


def export_graphs(model: BertLSTMDocumentModel) -> list[ExportGraph]:
    """The document reader (``NAME.onnx``) and the window encoder (``NAME.windows.onnx``)."""
    windows = {0: "windows", 1: "pieces"}
    encoder = ExportGraph(
        WindowEncoder(model).eval(),
        ("input_ids", "attention_mask"),
        "vectors",
        ("windows", "features"),
        {"input_ids": windows, "attention_mask": windows},
        name="windows",
        file=WINDOWS_GRAPH,
    )
    dynamic = {"vectors": {0: "documents", 1: "steps"}, "doc_counts": {0: "documents"}}
    reader = ExportGraph(
        DocumentReader(model).eval(), ("vectors", "doc_counts"), "logits", ("documents", "labels"), dynamic
    )
    return [reader, encoder]
