"""The student: word-piece embeddings (started from its teacher encoder's input embeddings) → an LSTM over the
real pieces → dropout → linear. No encoder: it reads the teacher's word pieces and answers alone.

It learns from the teacher's logits over a transfer set (:meth:`StudentModel.compute_loss`): their squared
difference (``mse``, Tang et al. 2019), or the divergence of its probabilities from the teacher's at a
temperature (``kl``, Hinton et al. 2015), mixed with cross-entropy on gold labels where the set has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...core.config import TrainConfig
from ...core.modeling import make_lstm
from ..classify.model import ClassifierOutput
from .config import StudentConfig


class StudentModel(nn.Module):
    """Embeddings → LSTM → dropout → linear, from its settings, an embedding table (V, H) and the number of
    labels (its teacher's); ``multi_label`` as its teacher."""

    encoder_frozen = True  # nothing pre-trained to protect: one learning rate, no warmup
    fused_optimizer = True  # AdamW in one kernel over the (V, H) embedding table

    def __init__(self, config: StudentConfig, table: np.ndarray | Tensor, num_labels: int, multi_label: bool) -> None:
        super().__init__()
        self.config, self.num_labels, self.multi_label = config, num_labels, multi_label
        table = torch.as_tensor(np.asarray(table, dtype=np.float32))
        if not config.train_embeddings:  # kept in float16 (half the folder): computed exactly as it is stored
            table = table.half().float()
        self.embeddings = nn.Embedding.from_pretrained(table, freeze=not config.train_embeddings)  # (V, H)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = make_lstm(config, table.size(1))
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.lstm_units * directions, num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        """What the gradient explanations attribute to (as an encoder's input embeddings)."""
        return self.embeddings

    def lstm_inputs(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The embedded pieces (B, T, H) and each row's number of real ones (B,)."""
        return self.dropout(self.embeddings(input_ids)), attention_mask.sum(dim=1)

    def classify(self, features: Tensor, lengths: Tensor) -> Tensor:
        """The LSTM over each row's real pieces, its last states, the head: (B, T, H) -> (B, C)."""
        packed = pack_padded_sequence(features, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # (layers * directions, B, U)
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.config.bidirectional else h_n[-1]  # (B, D*U)
        return self.head(self.dropout(last))  # (B, C)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None) -> ClassifierOutput:
        logits = self.classify(*self.lstm_inputs(input_ids, attention_mask))
        loss = None if labels is None else self.compute_loss(logits, labels) / logits.size(0)
        return ClassifierOutput(logits=logits, loss=loss)

    # --- what the Trainer needs (core.training.TrainableModel) -----------------------------------------------
    def compute_loss(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """The batch's loss summed over its examples. ``labels`` (B, 2C + 1): the teacher's logits, the gold
        labels (one-hot, or the label set), and 1 where the gold labels are known."""
        C = self.num_labels
        teacher, gold, known = labels[:, :C].float(), labels[:, C : 2 * C].float(), labels[:, 2 * C].float()
        logits = logits.float()
        if self.config.loss == "mse":
            matched = ((logits - teacher) ** 2).mean(dim=1)  # (B,)
        else:
            matched = self._divergence(logits, teacher)  # (B,)
        w = self.config.gold_weight
        if w == 0:
            return matched.sum()
        if self.multi_label:
            gold_loss = F.binary_cross_entropy_with_logits(logits, gold, pos_weight=weight, reduction="none").mean(1)
        else:
            gold_loss = F.cross_entropy(logits, gold.argmax(1), weight=weight, reduction="none")
        return ((1 - w) * matched + w * known * gold_loss).sum()

    def _divergence(self, logits: Tensor, teacher: Tensor) -> Tensor:
        """The teacher's probabilities against the student's at temperature T, times T² (B,)."""
        T = self.config.temperature
        if self.multi_label:  # each label its own yes/no
            target = torch.sigmoid(teacher / T)
            loss = F.binary_cross_entropy_with_logits(logits / T, target, reduction="none")
            loss = loss - F.binary_cross_entropy_with_logits(teacher / T, target, reduction="none")  # the entropy
            return loss.mean(1) * T * T
        target = F.log_softmax(teacher / T, dim=1)
        return F.kl_div(F.log_softmax(logits / T, dim=1), target, log_target=True, reduction="none").sum(1) * T * T

    def parameter_groups(self, training: TrainConfig) -> list[dict[str, Any]]:
        trained = [p for p in self.parameters() if p.requires_grad]
        return [{"params": trained, "lr": training.lr, "weight_decay": training.weight_decay}]

    def head_state_dict(self) -> dict[str, Tensor]:
        """Every weight: what ``model.safetensors`` holds (there is no encoder to keep apart). A frozen embedding
        table is stored in float16, which holds its values exactly (they were rounded to it at start)."""
        state = dict(self.state_dict())
        if not self.config.train_embeddings:
            state["embeddings.weight"] = state["embeddings.weight"].half()
        return state

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            found = [f"missing {', '.join(missing[:3])}"] if missing else []
            found += [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []
            raise ValueError(f"the student's weights do not fit its settings ({'; '.join(found)})")

    def encoder_files(self) -> None:
        """A student has no encoder to save."""
        return None

    encoder = None  # what a model folder saves beside the head: nothing
