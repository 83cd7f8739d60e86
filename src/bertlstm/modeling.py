"""The BERT→LSTM classifier: a pre-trained encoder, an LSTM over its real tokens, a dense softmax head.

Three recipes share this one module (``ModelConfig.mode``):

* ``frozen``   — encoder frozen; its token states (B, T, H) feed the LSTM, which reads real tokens only.
* ``pooled``   — encoder frozen; the states are mean-pooled over real tokens into one vector that feeds
  the LSTM as a length-1 sequence.
* ``finetune`` — as ``frozen`` but the encoder trains too (at its own, lower learning rate).

Unlike the original Keras recipe, padding never reaches the LSTM: sequences are packed by their true
lengths, so a text gets the same prediction alone or padded inside a batch.

``ModelConfig.layers`` picks which encoder layers the LSTM reads — the feature-based variants of the BERT
paper: the last layer, the second-to-last, the last four concatenated, or a learned softmax-weighted sum of
all layers (``scalar-mix``, as in ELMo). :meth:`BertLSTMModel.encode` returns the selected layers side by side,
which is what the feature cache stores; the scalar mix (trainable even with a frozen encoder) runs after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence
from transformers import PreTrainedModel

from .config import ModelConfig, TrainConfig, encoder_lr_for
from .errors import BertLSTMError


@dataclass
class ClassifierOutput:
    logits: Tensor  # (B, C) unnormalised class scores
    loss: Tensor | None = None  # mean cross-entropy (binary cross-entropy when multi-label), only with labels


class ScalarMix(nn.Module):
    """A learned softmax-weighted sum of K layers, times a learned scale: (..., K * H) -> (..., H)."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.weights = nn.Parameter(torch.zeros(num_layers))  # uniform mix at the start
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, stacked: Tensor) -> Tensor:
        layers = stacked.unflatten(-1, (self.num_layers, -1))  # (..., K, H)
        mix = torch.softmax(self.weights, dim=0).to(layers.dtype)  # (K,)
        return self.gamma * torch.einsum("...kh,k->...h", layers, mix)  # (..., H)


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token states over real tokens: (B, T, H), (B, T) -> (B, H)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def layer_ids(layers: str, num_hidden_layers: int) -> list[int]:
    """Which of the encoder's hidden states (0: the embeddings' output) a ``layers`` setting reads."""
    return {
        "last": [-1],
        "second-to-last": [-2],
        "concat-last-4": [-4, -3, -2, -1],
        "scalar-mix": list(range(num_hidden_layers + 1)),  # the embeddings' output and every layer
    }[layers]


def encode_layers(
    encoder: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, ids: list[int], train: bool
) -> Tensor:
    """The hidden states ``ids`` side by side: (B, T) -> (B, T, K*H). Gradients flow only when ``train``."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and train):
        if ids == [-1]:
            return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return torch.cat([out.hidden_states[i] for i in ids], dim=-1)


def freeze_pooler(encoder: PreTrainedModel) -> None:
    """The pooler is never read (token states are): no trainable parameter may go unused, or several
    processes (DDP) would never share gradients."""
    pooler = getattr(encoder, "pooler", None)
    if isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)


# --- partial fine-tuning: the encoder split in a frozen lower part and a trained top ----------------------
def encoder_parts(encoder: PreTrainedModel) -> tuple[nn.Module, nn.ModuleList]:
    """The embeddings and the transformer layers of a BERT-style encoder (BERT, RoBERTa, ELECTRA, ...)."""
    embeddings = getattr(encoder, "embeddings", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not isinstance(embeddings, nn.Module):
        raise BertLSTMError(
            f"`train_top_layers` needs a BERT-style encoder (embeddings, then encoder.layer); "
            f"{type(encoder).__name__} is not one: fine-tune all its layers",
            "train_top_layers",
        )
    return embeddings, layers


def run_layers(encoder: PreTrainedModel, layers: Any, hidden: Tensor, attention_mask: Tensor) -> list[Tensor]:
    """Each of ``layers`` in turn over ``hidden`` (B, T, H), attending to real tokens only: the output of
    every layer, (B, T, H) each."""
    from transformers.masking_utils import create_bidirectional_mask

    bias = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)
    states = []
    for layer in layers:
        hidden = layer(hidden, bias)  # (B, T, H)
        states.append(hidden)
    return states


class EncoderModel(nn.Module):
    """What every model here shares: an ``encoder`` under a head (everything else), frozen unless
    ``config.mode`` is ``finetune``, trained with two learning rates, and saved as head weights plus the
    encoder's own folder."""

    config: Any
    encoder: PreTrainedModel
    layer_ids: list[int]  # the hidden states the head reads (layer_ids())
    feature_size: int  # what encode() returns per position
    split: int | None = None  # partial fine-tuning: the first trained layer (the layers below are frozen)

    @property
    def encoder_frozen(self) -> bool:
        return self.config.mode != "finetune"

    @property
    def cacheable(self) -> bool:
        """Whether the feature cache can stand in for (part of) the encoder: frozen, or partly fine-tuned."""
        return self.encoder_frozen or self.split is not None

    def freeze(self) -> None:
        """Freeze what does not train: the whole encoder (frozen recipes), or with ``train_top_layers`` K
        below the encoder's depth its embeddings and every layer under the top K; always the pooler."""
        depth = self.encoder.config.num_hidden_layers
        top = getattr(self.config, "train_top_layers", None)
        if self.encoder_frozen:
            self.encoder.requires_grad_(False)
        elif top is not None and top < depth:
            self.split = depth - top
            embeddings, layers = encoder_parts(self.encoder)
            embeddings.requires_grad_(False)
            layers[: self.split].requires_grad_(False)
        elif top is not None and top > depth:
            raise BertLSTMError(
                f"`train_top_layers` {top} is more than the encoder's {depth} layers", "train_top_layers"
            )
        freeze_pooler(self.encoder)

    def train(self, mode: bool = True) -> EncoderModel:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()  # a frozen encoder never runs dropout
        elif self.split is not None:  # nor do the frozen embeddings and lower layers
            embeddings, layers = encoder_parts(self.encoder)
            embeddings.eval()
            layers[: self.split].eval()
        return self

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The features the head reads, from token ids (B, T) and their mask."""
        raise NotImplementedError

    # --- what the feature cache stores -------------------------------------------------------------
    @property
    def cached_ids(self) -> list[int]:
        """Partial fine-tuning: the hidden states (0: embeddings) the cache holds, side by side: those the
        head reads from the frozen part, and the input of the first trained layer."""
        assert self.split is not None
        total = self.encoder.config.num_hidden_layers + 1
        return sorted({i % total for i in self.layer_ids if i % total < self.split} | {self.split})

    @property
    def cache_feature_size(self) -> int:
        if self.split is None:
            return self.feature_size
        return self.encoder.config.hidden_size * len(self.cached_ids)

    def cache_encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """What the feature cache stores per position: the features (:meth:`encode`) of a frozen encoder, or
        the frozen part's states (B, T, len(cached_ids) * H), running only the layers below ``split``."""
        if self.split is None:
            return self.encode(input_ids, attention_mask)
        embeddings, layers = encoder_parts(self.encoder)
        hidden = embeddings(input_ids=input_ids)  # (B, T, H)
        states = [hidden, *run_layers(self.encoder, layers[: self.split], hidden, attention_mask)]  # split + 1
        return torch.cat([states[i] for i in self.cached_ids], dim=-1)

    def from_cache(self, cached: Tensor, lengths: Tensor) -> Tensor:
        """The features (as :meth:`encode` returns them) from what the cache stores (B, T, D) and each row's
        real tokens (B,): with partial fine-tuning, the trained top layers run over the cached states."""
        if self.split is None:
            return cached
        hidden_size, total = self.encoder.config.hidden_size, self.encoder.config.num_hidden_layers + 1
        states = dict(zip(self.cached_ids, cached.split(hidden_size, dim=-1), strict=True))  # state id -> (B, T, H)
        mask = torch.arange(cached.size(1), device=cached.device) < lengths.to(cached.device).unsqueeze(1)  # (B, T)
        top = run_layers(self.encoder, encoder_parts(self.encoder)[1][self.split :], states[self.split], mask.long())
        states.update(zip(range(self.split + 1, total), top, strict=True))
        return torch.cat([states[i % total] for i in self.layer_ids], dim=-1)  # (B, T, K*H)

    @staticmethod
    def is_head(name: str) -> bool:
        """Whether a parameter or state name belongs to what sits on the encoder (LSTM, mix, dense, CRF)."""
        return not name.startswith("encoder.")

    def parameter_groups(self, training: TrainConfig) -> list[dict[str, Any]]:
        """The head (LSTM, mix, dense, CRF) at ``lr``; in ``finetune`` the encoder too, at its own ``encoder_lr``."""
        head = [p for name, p in self.named_parameters() if self.is_head(name)]
        groups = [{"params": head, "lr": training.lr, "weight_decay": training.weight_decay}]
        if not self.encoder_frozen:
            lr = encoder_lr_for(training.encoder_lr, self.encoder.config.hidden_size)
            encoder = {"params": [p for p in self.encoder.parameters() if p.requires_grad], "lr": lr}
            groups.insert(0, {**encoder, "weight_decay": training.encoder_weight_decay})
        return groups

    def head_state_dict(self) -> dict[str, Tensor]:
        """Everything but the encoder: what ``model.safetensors`` holds (the encoder is saved on its own)."""
        return {k: v for k, v in self.state_dict().items() if self.is_head(k)}

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """A CPU copy of what training changes: the head, and the encoder when it is fine-tuned."""
        state = self.head_state_dict() if self.encoder_frozen else self.state_dict()
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """The inverse of :meth:`trainable_state_dict` (and of :meth:`head_state_dict`); a state for another
        model is an error."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or any(self.is_head(k) for k in missing):
            raise ValueError(f"weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")


class BertLSTMModel(EncoderModel):
    """Encoder → LSTM → dropout → linear. Built from a :class:`ModelConfig`, a loaded encoder and the number
    of labels (what the data decides), and nothing else."""

    def __init__(self, config: ModelConfig, encoder: PreTrainedModel, num_labels: int) -> None:
        super().__init__()
        if num_labels < 2:
            raise ValueError("a classifier needs at least two labels")
        self.config = config
        self.num_labels = num_labels
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.layer_ids = layer_ids(config.layers, encoder.config.num_hidden_layers)
        self.feature_size = hidden * len(self.layer_ids)  # what encode() returns per position
        self.scalar_mix = ScalarMix(len(self.layer_ids)) if config.layers == "scalar-mix" else None
        self.lstm = nn.LSTM(
            input_size=hidden if self.scalar_mix is not None else self.feature_size,
            hidden_size=config.lstm_units,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.lstm_units * directions, num_labels)
        self.freeze()

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The selected encoder layers side by side: per token (B, T, K*H), or in ``pooled`` mode one
        mean-pooled vector per text (B, 1, K*H). The mix of layers comes later, in :meth:`forward`."""
        hidden = encode_layers(self.encoder, input_ids, attention_mask, self.layer_ids, not self.encoder_frozen)
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
