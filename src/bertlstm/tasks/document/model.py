"""The BERT→LSTM document classifier: an LSTM over the vectors of a document's windows ("Recurrence over BERT",
Pappagari et al. 2019), so that a text longer than the encoder's window is read whole.

The encoder reads each window alone (:mod:`.windows`); a window becomes one vector, the mean of its real
pieces' states (or its ``[CLS]`` state), of the layers ``layers`` picks; the classifier's LSTM and head
(:class:`~bertlstm.tasks.classify.model.BertLSTMModel`, whose LSTM reads real steps only) read a document's
window vectors in order. Padding windows of a batch never reach the LSTM, as padding tokens never reach it in
the classifier: a document gets the same prediction alone or batched with longer ones.

For prediction the two halves run apart (:class:`WindowEncoder`, then :class:`DocumentHead`), so that windows
are encoded in batches of a fixed size whatever the documents' lengths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ...core.modeling import encode_layers, mean_pool
from ..classify.model import BertLSTMModel, ClassifierOutput
from .config import DocumentConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ...core.encoders import EncoderSource


class BertLSTMDocumentModel(BertLSTMModel):
    """Windows → encoder → a vector per window → LSTM over a document's windows → dropout → linear."""

    config: DocumentConfig

    def __init__(self, config: DocumentConfig, encoder: PreTrainedModel | EncoderSource, num_labels: int) -> None:
        super().__init__(config, encoder, num_labels)

    @property
    def cache_pooling(self) -> str:
        """What the feature cache stores per window: its vector, or (partial fine-tuning) its pieces' states."""
        return "tokens" if self.split is not None else f"window-{self.config.chunk_pooling}"

    def pool(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """A window's vector: (Nw, T, D), (Nw, T) -> (Nw, D)."""
        return mean_pool(hidden, attention_mask) if self.config.chunk_pooling == "mean" else hidden[:, 0]

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Each window's vector, the selected layers side by side: (Nw, T) -> (Nw, 1, K*H); what the cache
        stores for a frozen encoder (the layers are mixed later, after the vectors)."""
        hidden = encode_layers(self.encoder, input_ids, attention_mask, self.layer_ids, self.encoder_gradients)
        return self.pool(hidden, attention_mask).unsqueeze(1)

    def window_vectors(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        features: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """(Nw, K*H): from windows of ids and mask, or from the cache: the windows' vectors (Nw, 1, K*H), or
        with partial fine-tuning their pieces' frozen states (Nw, T, D) and their lengths (Nw,)."""
        if features is None:
            if input_ids is None or attention_mask is None:
                raise ValueError("give input_ids and attention_mask, or features")
            return self.encode(input_ids, attention_mask)[:, 0]
        if self.split is None:
            return features[:, 0]
        assert lengths is not None
        mask = torch.arange(features.size(1), device=features.device) < lengths.to(features.device).unsqueeze(1)
        return self.pool(self.from_cache(features, lengths), mask.long())  # the trained top layers run here

    def read_documents(self, vectors: Tensor, doc_counts: Tensor) -> Tensor:
        """Logits (B, C) from the window vectors of each document (B, W, K*H), its first ``doc_counts`` real."""
        if self.scalar_mix is not None:
            vectors = self.scalar_mix(vectors)  # (B, W, H)
        return self.classify(vectors, doc_counts)

    def forward(  # type: ignore[override]  # a document's windows, not a text's tokens
        self,
        doc_windows: Tensor,
        doc_counts: Tensor,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        features: Tensor | None = None,
        lengths: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> ClassifierOutput:
        """Classify documents: the batch's windows (ids and mask (Nw, T), or cached ``features``), and per
        document (B, W) the rows of its windows among them, ``doc_counts`` (B,) of them real."""
        vectors = self.window_vectors(input_ids, attention_mask, features, lengths)  # (Nw, K*H)
        logits = self.read_documents(vectors[doc_windows], doc_counts)  # (B, W, K*H) -> (B, C)
        loss = None if labels is None else self.compute_loss(logits, labels) / logits.size(0)
        return ClassifierOutput(logits=logits, loss=loss)


class WindowEncoder(nn.Module):
    """Windows of ids and mask (Nw, T) -> their vectors (Nw, K*H): the first half of a prediction."""

    def __init__(self, model: BertLSTMDocumentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.window_vectors(input_ids, attention_mask)


class DocumentHead(nn.Module):
    """Documents' window vectors (B, W, K*H), ``doc_counts`` (B,) of each real -> logits (B, C): the second half."""

    def __init__(self, model: BertLSTMDocumentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, vectors: Tensor, doc_counts: Tensor) -> Tensor:
        return self.model.read_documents(vectors, doc_counts)
