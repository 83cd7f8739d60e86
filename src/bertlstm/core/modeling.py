"""What every model here shares: a pre-trained encoder under a head, the encoder layers the head reads, and
the pieces partial fine-tuning and the feature cache rely on.

``layers`` picks which encoder layers a model reads — the feature-based variants of the BERT paper: the last
layer, the second-to-last, the last four concatenated, or a learned softmax-weighted sum of all layers
(``scalar-mix``, as in ELMo). :meth:`EncoderModel.encode` returns the selected layers side by side, which is
what the feature cache stores; a scalar mix (trainable even with a frozen encoder) runs after it. A task's
model (the classifier's in :mod:`bertlstm.tasks.classify.model`, the tagger's in
:mod:`bertlstm.tasks.tag.model`) subclasses :class:`EncoderModel`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

from .config import TrainConfig, encoder_lr_for
from .encoders import EncoderSource, known_fingerprint
from .errors import BertLSTMError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

M = TypeVar("M", bound=nn.Module)


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
    from transformers.masking_utils import create_bidirectional_mask  # the encoder runs: transformers is loaded

    bias = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)
    states = []
    for layer in layers:
        hidden = layer(hidden, bias)  # (B, T, H)
        states.append(hidden)
    return states


class EncoderModel(nn.Module):
    """What every model here shares: an ``encoder`` under a head (everything else), frozen unless
    ``config.mode`` is ``finetune``, trained with two learning rates, and saved as head weights plus the
    encoder's own folder.

    The encoder may be attached as an :class:`~bertlstm.core.encoders.EncoderSource` not loaded yet (a frozen
    encoder whose features are cached): it is loaded the first time ``encoder`` is read, onto the head's
    device, frozen. Until then its sizes come from ``encoder_config``."""

    config: Any
    encoder_config: Any  # the encoder's config (or, not loaded yet, the sizes a note kept of it)
    encoder_source: EncoderSource | None = None  # where the encoder came from, when known
    layer_ids: list[int]  # the hidden states the head reads (layer_ids())
    feature_size: int  # what encode() returns per position
    scalar_mix: ScalarMix | None
    split: int | None = None  # partial fine-tuning: the first trained layer (the layers below are frozen)
    attributing: bool = False  # gradients flow through the encoder even when frozen (core.attribution)

    def attach(self, config: Any, encoder: PreTrainedModel | EncoderSource) -> int:
        """Set the settings, the encoder (or its source), the layers read and their mix (``scalar-mix``);
        returns the width of what reaches the head per position."""
        self.config, self.encoder_config = config, encoder.config
        if isinstance(encoder, EncoderSource):
            self.encoder_source = encoder
            if encoder.module is not None:
                self._modules["encoder"] = encoder.module  # not add_module: it would read the property below
        else:
            self._modules["encoder"] = encoder
        hidden = self.encoder_config.hidden_size
        self.layer_ids = layer_ids(config.layers, self.encoder_config.num_hidden_layers)
        self.feature_size = hidden * len(self.layer_ids)  # what encode() returns per position
        self.scalar_mix = ScalarMix(len(self.layer_ids)) if config.layers == "scalar-mix" else None
        return hidden if self.scalar_mix is not None else self.feature_size

    @property
    def encoder(self) -> PreTrainedModel:
        """The encoder, loaded now if it was attached as a source not loaded yet."""
        if "encoder" not in self._modules:
            assert self.encoder_source is not None
            device = next(self.parameters()).device
            self._modules["encoder"] = self.encoder_source.load().to(device)
            self.freeze()
            self.train(self.training)
        return self._modules["encoder"]  # type: ignore[return-value]

    @property
    def encoder_loaded(self) -> bool:
        return "encoder" in self._modules

    @property
    def encoder_frozen(self) -> bool:
        return self.config.mode != "finetune"

    @property
    def encoder_gradients(self) -> bool:
        """Whether gradients flow through the encoder: it trains, or an explanation follows them to its inputs."""
        return not self.encoder_frozen or self.attributing

    @property
    def cache_pooling(self) -> str:
        """What the feature cache stores per text: a row per token, or one (mean-pooled) row."""
        return "mean" if getattr(self.config, "mode", None) == "pooled" else "tokens"

    @property
    def cache_cut(self) -> str | None:
        """How the texts were cut to the encoder's length, where not at their end: a key of the feature cache."""
        return None

    @property
    def cacheable(self) -> bool:
        """Whether the feature cache can stand in for (part of) the encoder: frozen, or partly fine-tuned."""
        return self.encoder_frozen or self.split is not None

    def freeze(self) -> None:
        """Freeze what does not train: the whole encoder (frozen recipes), or with ``train_top_layers`` K
        below the encoder's depth its embeddings and every layer under the top K; always the pooler. (An encoder
        not loaded yet is frozen when it is.)"""
        if not self.encoder_loaded:
            return
        depth = self.encoder_config.num_hidden_layers
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
        if not self.encoder_loaded:
            return self
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
        total = self.encoder_config.num_hidden_layers + 1
        return sorted({i % total for i in self.layer_ids if i % total < self.split} | {self.split})

    @property
    def cache_feature_size(self) -> int:
        if self.split is None:
            return self.feature_size
        return self.encoder_config.hidden_size * len(self.cached_ids)

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
        hidden_size, total = self.encoder_config.hidden_size, self.encoder_config.num_hidden_layers + 1
        states = dict(zip(self.cached_ids, cached.split(hidden_size, dim=-1), strict=True))  # state id -> (B, T, H)
        mask = torch.arange(cached.size(1), device=cached.device) < lengths.to(cached.device).unsqueeze(1)  # (B, T)
        top = run_layers(self.encoder, encoder_parts(self.encoder)[1][self.split :], states[self.split], mask.long())
        states.update(zip(range(self.split + 1, total), top, strict=True))
        return torch.cat([states[i % total] for i in self.layer_ids], dim=-1)  # (B, T, K*H)

    def get_input_embeddings(self) -> nn.Module:
        """The encoder's word-piece embeddings: what the gradient explanations attribute to."""
        return self.encoder.get_input_embeddings()

    @staticmethod
    def is_head(name: str) -> bool:
        """Whether a parameter or state name belongs to what sits on the encoder (LSTM, mix, dense, CRF)."""
        return not name.startswith("encoder.")

    def parameter_groups(self, training: TrainConfig) -> list[dict[str, Any]]:
        """The head (LSTM, mix, dense, CRF) at ``lr``; in ``finetune`` the encoder too, at its own ``encoder_lr``."""
        head = [p for name, p in self.named_parameters() if self.is_head(name)]
        groups = [{"params": head, "lr": training.lr, "weight_decay": training.weight_decay}]
        if not self.encoder_frozen:
            lr = encoder_lr_for(training.encoder_lr, self.encoder_config.hidden_size)
            encoder = {"params": [p for p in self.encoder.parameters() if p.requires_grad], "lr": lr}
            groups.insert(0, {**encoder, "weight_decay": training.encoder_weight_decay})
        return groups

    def encoder_hash(self, tokenizer: Any) -> str:
        """What keys the encoder's features in the cache (:func:`~bertlstm.core.encoders.encoder_fingerprint`):
        for an encoder not loaded yet, what the note on its files says."""
        if not self.encoder_loaded and self.split is None:
            assert self.encoder_source is not None and self.encoder_source.note is not None
            return self.encoder_source.note.fingerprint
        return known_fingerprint(self.encoder, tokenizer, self.split)

    def encoder_files(self) -> EncoderSource | None:
        """Where a model folder may copy the encoder's files from: a frozen encoder, unchanged since it was
        loaded from a folder whose files were checked (None: it is saved by serialising it)."""
        source = self.encoder_source
        module = self._modules.get("encoder")
        if source is None or not self.encoder_frozen or not source.copyable(module):
            return None
        return source

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
        missing = [k for k in missing if self.is_head(k)]  # the encoder's come from its own folder
        if unexpected or missing:
            found = [f"missing {', '.join(missing[:3])}"] if missing else []
            found += [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []
            raise ValueError(f"the head's weights do not fit its settings ({'; '.join(found)})")


def quantize_int8(model: M, device: torch.device) -> M:
    """A copy of ``model`` with int8 weights for every ``nn.Linear`` and ``nn.LSTM``, activations quantized on
    the fly (CPU only)."""
    if device.type != "cpu":
        raise BertLSTMError("int8 quantization runs on the CPU: use `device` cpu", "device")
    if isinstance(model, EncoderModel):
        model.encoder  # noqa: B018  an encoder not loaded yet is loaded now, to be quantized with the rest
    # One scale per output row of each linear layer: a single scale per tensor cost 2.2 SST-2 dev points.
    spec = {nn.Linear: per_channel_dynamic_qconfig, nn.LSTM: default_dynamic_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao is moving to torchao; it still works
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)  # the same class


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or
    AMX (detected at run time; without them bf16 is emulated, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    found = (getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
    return device.type == "cpu" and any(check is not None and check() for check in found)


def native_int8(device: torch.device) -> bool:
    """Whether ``device`` is a CPU with int8 dot-product instructions (AVX512-VNNI, or AMX), which int8 linear
    layers run on (detected at run time)."""
    cpu = torch.cpu
    found = (getattr(cpu, "_is_vnni_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
    return device.type == "cpu" and any(check is not None and check() for check in found)


def make_lstm(config: Any, input_size: int) -> nn.LSTM:
    """The LSTM a model's settings describe (``lstm_units``, ``lstm_layers``, ``bidirectional``, ``dropout``
    between stacked layers), reading ``input_size`` features per step."""
    return nn.LSTM(
        input_size=input_size,
        hidden_size=config.lstm_units,
        num_layers=config.lstm_layers,
        batch_first=True,
        bidirectional=config.bidirectional,
        dropout=config.dropout if config.lstm_layers > 1 else 0.0,
    )
