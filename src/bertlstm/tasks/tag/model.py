"""The BERT→BiLSTM→CRF tagger: per-word tags (named entities) from a pre-trained encoder.

The encoder reads word pieces in windows (:mod:`bertlstm.tasks.tag.windows`); each word is represented by its first
piece (``word_pooling``: or the mean of its pieces, or its first and last side by side); a BiLSTM
(``lstm_layers``, 0 for none: a linear head on the encoder, the usual fine-tuning control) runs over the
real words of each sentence only; a linear layer gives per-tag emission scores; and an optional linear-chain
CRF (:mod:`bertlstm.tasks.tag.crf`) scores whole tag paths. Padding and special tokens never reach the LSTM, the CRF
or the loss: words index real pieces, the LSTM is packed by word counts, and the loss is masked.

As in every model here (:class:`~bertlstm.core.modeling.EncoderModel`), ``layers`` picks the encoder layers
and ``frozen`` reads them from the feature cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ...core.modeling import EncoderModel, encode_layers, make_lstm
from .config import TaggerConfig
from .crf import CRF, allowed_transitions

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ...core.encoders import EncoderSource


@dataclass
class TaggerOutput:
    logits: Tensor  # (B, W, C) emission scores per word and tag
    loss: Tensor | None = None  # mean over sentences, only with labels


class BertTaggerModel(EncoderModel):
    """Encoder → word representations → BiLSTM → emissions → (CRF). Built from a :class:`TaggerConfig`, a
    loaded encoder and the tag names (IOB2, what the data decides)."""

    def __init__(self, config: TaggerConfig, encoder: PreTrainedModel | EncoderSource, tags: list[str]) -> None:
        super().__init__()
        if len(tags) < 2:
            raise ValueError("a tagger needs at least two tags")
        self.tags, self.num_labels = list(tags), len(tags)
        width = self.attach(config, encoder) * (2 if config.word_pooling == "first-last" else 1)
        self.lstm = None
        if config.lstm_layers:
            self.lstm = make_lstm(config, width)
            width = config.lstm_units * (2 if config.bidirectional else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, self.num_labels)
        self.crf = CRF(self.num_labels, allowed_transitions(self.tags)) if config.crf else None
        self.freeze()

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The selected layers side by side per piece: (Nw, T) -> (Nw, T, K*H); what the cache stores."""
        return encode_layers(self.encoder, input_ids, attention_mask, self.layer_ids, self.encoder_gradients)

    def words(self, pieces: Tensor, window: Tensor, start: Tensor, end: Tensor) -> Tensor:
        """Word vectors from piece vectors (Nw, T, D) and, per word (B, W), its window and piece span:
        (B, W, D), or (B, W, 2D) for first-last."""
        first = pieces[window, start]  # (B, W, D)
        if self.config.word_pooling == "first":
            return first
        if self.config.word_pooling == "first-last":
            return torch.cat([first, pieces[window, (end - 1).clamp(min=0)]], dim=-1)
        sums = F.pad(pieces.cumsum(dim=1), (0, 0, 1, 0))  # (Nw, T+1, D): sums[:, t] = sum of pieces < t
        count = (end - start).clamp(min=1).unsqueeze(-1).to(pieces.dtype)  # (B, W, 1)
        return (sums[window, end] - sums[window, start]) / count

    def word_states(self, features: Tensor, window: Tensor, start: Tensor, end: Tensor) -> Tensor:
        """What the LSTM reads: the layers mixed (scalar-mix), then per word (B, W, D)."""
        if self.scalar_mix is not None:
            features = self.scalar_mix(features)  # (Nw, T, H)
        return self.words(features, window, start, end)

    def forward(
        self,
        word_window: Tensor,
        word_start: Tensor,
        word_end: Tensor,
        word_counts: Tensor,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        features: Tensor | None = None,
        lengths: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> TaggerOutput:
        """Emission scores (B, W, C) for windows of token ids (Nw, T) with their mask, or of cached
        ``features`` (Nw, T, D) with their real pieces ``lengths`` (Nw,) (what the cache stores, see
        :meth:`from_cache`); per word (B, W) its window row and piece span, and per sentence its number of
        words (B,). ``labels`` (B, W), -100 past each sentence's end, add the loss."""
        if features is None:
            if input_ids is None or attention_mask is None:
                raise ValueError("give input_ids and attention_mask, or features")
            features = self.encode(input_ids, attention_mask)  # (Nw, T, K*H)
        elif self.split is not None and lengths is not None:
            features = self.from_cache(features, lengths)  # (Nw, T, K*H): the trained top layers run here
        words = self.word_states(features, word_window, word_start, word_end)  # (B, W, D)
        if self.lstm is not None:
            packed = pack_padded_sequence(words, word_counts.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            words, _ = pad_packed_sequence(out, batch_first=True, total_length=word_window.size(1))  # (B, W, 2U)
        logits = self.head(self.dropout(words))  # (B, W, C)
        loss = None if labels is None else self.compute_loss(logits, labels) / logits.size(0)
        return TaggerOutput(logits=logits, loss=loss)

    def decode(self, logits: Tensor, word_counts: Tensor) -> Tensor:
        """The best tag per word: (B, W, C) -> (B, W); with a CRF the best valid path (Viterbi), else each
        word's best tag."""
        if self.crf is None:
            return logits.argmax(-1)
        mask = torch.arange(logits.size(1), device=logits.device) < word_counts.to(logits.device).unsqueeze(1)
        return self.crf.decode(logits, mask)

    # --- what the Trainer needs (training.TrainableModel; the rest is shared, in EncoderModel) ----------
    def compute_loss(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """The batch's loss summed over its sentences: the CRF's negative log-likelihood, or cross-entropy
        summed over each sentence's words. ``labels`` (B, W) are -100 past a sentence's end."""
        mask = labels >= 0  # (B, W)
        if self.crf is not None:
            return self.crf.nll(logits, labels.clamp(min=0), mask)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), weight=weight, reduction="sum")
