"""The BERT→LSTM classifier: a pre-trained encoder, an LSTM over its real tokens, a dense softmax head.

Three recipes share this one module (``ModelConfig.mode``):

* ``frozen``   — encoder frozen; its token states (B, T, H) feed the LSTM, which reads real tokens only.
* ``pooled``   — encoder frozen; the states are mean-pooled over real tokens into one vector that feeds
  the LSTM as a length-1 sequence.
* ``finetune`` — as ``frozen`` but the encoder trains too (at its own, lower learning rate).

Unlike the original Keras recipe, padding never reaches the LSTM: sequences are packed by their true
lengths, so a text gets the same prediction alone or padded inside a batch. What every model shares (the
encoder, the layers it reads, freezing, the feature cache's side, the parameter groups) is
:class:`~bertlstm.core.modeling.EncoderModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...core.modeling import EncoderModel, encode_layers, make_lstm, mean_pool
from .config import ModelConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ...core.encoders import EncoderSource


@dataclass
class ClassifierOutput:
    logits: Tensor  # (B, C) unnormalised class scores
    loss: Tensor | None = None  # mean cross-entropy (binary cross-entropy when multi-label), only with labels


class BertLSTMModel(EncoderModel):
    """Encoder → LSTM → dropout → linear. Built from a :class:`ModelConfig`, a loaded encoder and the number
    of labels (what the data decides), and nothing else."""

    def __init__(self, config: ModelConfig, encoder: PreTrainedModel | EncoderSource, num_labels: int) -> None:
        super().__init__()
        if num_labels < 2:
            raise ValueError("a classifier needs at least two labels")
        self.num_labels = num_labels
        width = self.attach(config, encoder)  # the encoder, the layers read and their mix
        self.lstm = make_lstm(config, width)
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.lstm_units * directions, num_labels)
        self.freeze()

    @property
    def cache_cut(self) -> str | None:
        return "head-tail" if self.config.long_text == "head-tail" else None

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The selected encoder layers side by side: per token (B, T, K*H), or in ``pooled`` mode one
        mean-pooled vector per text (B, 1, K*H). The mix of layers comes later, in :meth:`forward`."""
        hidden = encode_layers(self.encoder, input_ids, attention_mask, self.layer_ids, self.encoder_gradients)
        if self.config.mode == "pooled":
            return mean_pool(hidden, attention_mask).unsqueeze(1)  # (B, 1, K*H)
        return hidden  # (B, T, K*H)

    def lstm_inputs(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        features: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """What the LSTM reads, (B, T, D), and each row's number of real steps (B,): from token ids and their
        mask, or from cached ``features`` (the selected layers side by side) and their ``lengths``."""
        if features is None:
            if input_ids is None or attention_mask is None:
                raise ValueError("give input_ids and attention_mask, or features and lengths")
            features = self.encode(input_ids, attention_mask)  # (B, T, K*H) or (B, 1, K*H)
            lengths = attention_mask.sum(dim=1)  # (B,) real tokens per row
        elif self.split is not None and lengths is not None:
            features = self.from_cache(features, lengths)  # (B, T, K*H): the trained top layers run here
        if self.config.mode == "pooled" or lengths is None:
            lengths = torch.ones(features.size(0), dtype=torch.long, device=features.device)
        if self.scalar_mix is not None:
            features = self.scalar_mix(features)  # (B, T, H)
        return features, lengths

    def classify(self, features: Tensor, lengths: Tensor) -> Tensor:
        """LSTM over the first ``lengths[i]`` steps of each row, then the head: (B, T, D) -> (B, C)."""
        if self.config.bidirectional:
            # The backward direction must start at each row's last real token: pack by true lengths.
            packed = pack_padded_sequence(features, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.lstm(packed)  # (layers * 2, B, U), each row's states at its true ends
            last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2U): forward end + backward end (at token 0)
        else:
            # Forward only: the output at step t has read steps 0..t, so padding after a row's end never
            # reaches its output there. Unpacked, the LSTM runs about 30% faster on CPU than packed.
            out, _ = self.lstm(features)  # (B, T, U)
            last = out[torch.arange(out.size(0), device=out.device), lengths.to(out.device) - 1]  # (B, U)
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
        with their ``lengths``; the loss is computed only when ``labels`` are given: (B,) class ids, or
        (B, C) 0/1 targets when ``multi_label``."""
        logits = self.classify(*self.lstm_inputs(input_ids, attention_mask, features, lengths))
        loss = None
        if labels is not None:
            loss = self.compute_loss(logits, labels) / logits.size(0)
        return ClassifierOutput(logits=logits, loss=loss)

    # --- what the Trainer needs (training.TrainableModel; the rest is shared, in EncoderModel) ----------
    def compute_loss(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """The batch's loss summed over its examples: cross-entropy over classes, or when ``multi_label``
        binary cross-entropy averaged over the labels of each example (labels (B, C), ``weight`` = pos_weight)."""
        if self.config.multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight, reduction="sum")
            return loss / logits.size(1)
        return F.cross_entropy(logits, labels, weight=weight, reduction="sum")
