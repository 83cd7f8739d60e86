"""The BERT→LSTM classifier: a pre-trained encoder, an LSTM over its real tokens, a dense softmax head.

Three recipes share this one module (``ModelConfig.mode``):

* ``frozen``   — encoder frozen; its token states (B, T, H) feed the LSTM, which reads real tokens only.
* ``pooled``   — encoder frozen; the states are mean-pooled over real tokens into one vector that feeds
  the LSTM as a length-1 sequence.
* ``finetune`` — as ``frozen`` but the encoder trains too (at its own, lower learning rate).

Unlike the original Keras recipe, padding never reaches the LSTM: sequences are packed by their true
lengths, so a text gets the same prediction alone or padded inside a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence
from transformers import PreTrainedModel

from .config import ModelConfig


@dataclass
class ClassifierOutput:
    logits: Tensor  # (B, C) unnormalised class scores
    loss: Tensor | None = None  # mean cross-entropy, only when labels were given


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token states over real tokens: (B, T, H), (B, T) -> (B, H)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class BertLSTMModel(nn.Module):
    """Encoder → LSTM → dropout → linear. Built from a :class:`ModelConfig` and a loaded encoder."""

    def __init__(self, config: ModelConfig, encoder: PreTrainedModel) -> None:
        super().__init__()
        if config.num_labels < 2:
            raise ValueError("a classifier needs at least two label names")
        self.config = config
        self.encoder = encoder
        self.lstm = nn.LSTM(
            input_size=encoder.config.hidden_size,
            hidden_size=config.lstm_units,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.lstm_units * directions, config.num_labels)
        if self.encoder_frozen:
            self.encoder.requires_grad_(False)

    @property
    def encoder_frozen(self) -> bool:
        return self.config.mode != "finetune"

    def train(self, mode: bool = True) -> BertLSTMModel:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()  # a frozen encoder never runs dropout
        return self

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """What the LSTM reads: token states (B, T, H), or in ``pooled`` mode one vector (B, 1, H)."""
        grad = torch.is_grad_enabled() and not self.encoder_frozen
        with torch.set_grad_enabled(grad):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.mode == "pooled":
            return mean_pool(hidden, attention_mask).unsqueeze(1)  # (B, 1, H)
        return hidden  # (B, T, H)

    def classify(self, features: Tensor, lengths: Tensor) -> Tensor:
        """LSTM over the first ``lengths[i]`` steps of each row, then the head: (B, T, H) -> (B, C)."""
        packed = pack_padded_sequence(features, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (layers * directions, B, U), each row's state at its true end
        if self.config.bidirectional:
            last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2U): forward end + backward end (at token 0)
        else:
            last = h_n[-1]  # (B, U)
        return self.head(self.dropout(last))  # (B, C)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        features: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> ClassifierOutput:
        """Classify token ids (B, T) with their mask, or precomputed ``features`` (from the feature cache)
        with their ``lengths``; the loss is computed only when ``labels`` (B,) are given."""
        if features is None:
            features = self.encode(input_ids, attention_mask)  # (B, T, H) or (B, 1, H)
            lengths = attention_mask.sum(dim=1)  # (B,) real tokens per row
        if self.config.mode == "pooled":
            lengths = torch.ones(features.size(0), dtype=torch.long)
        logits = self.classify(features, lengths)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits=logits, loss=loss)
