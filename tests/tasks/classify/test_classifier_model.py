"""The model: padding never changes a prediction, loss only with labels, what trains and what does not."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from bertlstm import BertLSTMClassifier, BertLSTMError, BertLSTMModel, ModelConfig, TrainConfig
from bertlstm.core.batching import pad_batch


def padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and mask (B, T) as tensors: what the model reads."""
    return tuple(torch.from_numpy(a) for a in pad_batch(sequences, pad_id))  # type: ignore[return-value]


def build(tiny_encoder: str, mode: str, bidirectional: bool = False, layers: int = 1) -> BertLSTMModel:
    config = ModelConfig(encoder=tiny_encoder, mode=mode, lstm_units=8, lstm_layers=layers, bidirectional=bidirectional)
    return BertLSTMModel(config, AutoModel.from_pretrained(tiny_encoder), num_labels=3).eval()


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", ["frozen", "pooled", "finetune"])
def test_padding_does_not_change_predictions(tiny_encoder: str, mode: str, bidirectional: bool) -> None:
    model = build(tiny_encoder, mode, bidirectional, layers=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    short = "good movie"
    longer = ["the plot was very boring and the actor was not good at all so sad", "nice"]
    ids = tokenizer([short, *longer])["input_ids"]
    with torch.no_grad():
        alone = torch.softmax(model(*padded(ids[:1], 0)).logits, -1)  # (1, C), no padding at all
        input_ids, mask = padded(ids, 0)  # the short text padded to the longest in the batch
        assert mask[0].sum() < mask.size(1)
        batched = torch.softmax(model(input_ids, mask).logits, -1)  # (3, C)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)


def test_padding_values_are_never_read(tiny_encoder: str) -> None:
    """Changing what sits in padded positions (ids, and the LSTM's view of them) changes nothing."""
    model = build(tiny_encoder, "frozen", bidirectional=True)
    input_ids, mask = padded([[2, 5, 6, 3], [2, 7, 3]], pad_id=0)
    garbage = input_ids.clone()
    garbage[1, 3] = 9  # a real word id at the padded position, still masked out
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids, mask).logits, model(garbage, mask).logits, atol=1e-6, rtol=0)


def test_loss_only_with_labels(tiny_encoder: str) -> None:
    model = build(tiny_encoder, "frozen")
    input_ids, mask = padded([[2, 5, 3], [2, 6, 7, 3]], 0)
    out = model(input_ids, mask)
    assert out.loss is None and out.logits.shape == (2, 3)
    out = model(input_ids, mask, labels=torch.tensor([0, 2]))
    assert out.loss is not None and out.loss.ndim == 0 and out.loss > 0


@pytest.mark.parametrize("mode", ["frozen", "pooled"])
def test_frozen_encoder_gets_no_gradient_and_no_dropout(tiny_encoder: str, mode: str) -> None:
    model = build(tiny_encoder, mode).train()
    assert not model.encoder.training and model.lstm.training
    input_ids, mask = padded([[2, 5, 3], [2, 6, 7, 3]], 0)
    model(input_ids, mask, labels=torch.tensor([0, 1])).loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.weight.grad is not None and model.lstm.weight_ih_l0.grad is not None


def test_finetune_trains_encoder_with_its_own_learning_rate(tiny_encoder: str) -> None:
    model = build(tiny_encoder, "finetune").train()
    assert model.encoder.training
    encoder_group, head_group = model.parameter_groups(TrainConfig(lr=1e-3, encoder_lr=2e-5))
    assert encoder_group["lr"] == 2e-5 and encoder_group["weight_decay"] == 0.001
    assert head_group["lr"] == 1e-3
    encoder_ids = {id(p) for p in model.encoder.parameters() if p.requires_grad}  # all but the unread pooler
    assert {id(p) for p in encoder_group["params"]} == encoder_ids
    assert not encoder_ids & {id(p) for p in head_group["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(encoder_group["params"]) + len(head_group["params"]) == len(trainable)


def test_pooled_mean_ignores_padding() -> None:
    from bertlstm.core.modeling import mean_pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), last position is padding
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_classifier_rejects_unknown_options() -> None:
    with pytest.raises(TypeError, match="lstm_unit"):
        BertLSTMClassifier(lstm_unit=3)
    with pytest.raises(BertLSTMError, match="`mode` must be one of frozen, pooled, finetune, not 'frozn'"):
        BertLSTMClassifier(mode="frozn").fit(["good", "bad"], ["pos", "neg"])  # settings are checked by fit


@pytest.mark.parametrize(
    ("layers", "width"), [("last", 32), ("second-to-last", 32), ("concat-last-4", 128), ("scalar-mix", 96)]
)
def test_layer_choice(tiny_encoder: str, layers: str, width: int) -> None:
    """encode() returns exactly the chosen hidden states; concat-last-4 needs 4 layers, so this builds its own."""
    from transformers import BertConfig, BertModel

    encoder = BertModel(
        BertConfig(
            vocab_size=40,
            hidden_size=32,
            num_hidden_layers=4 if layers != "scalar-mix" else 2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    )
    config = ModelConfig(mode="frozen", layers=layers, lstm_units=8)
    model = BertLSTMModel(config, encoder, num_labels=2).eval()
    input_ids, mask = padded([[2, 5, 6, 3], [2, 7, 3]], 0)
    with torch.no_grad():
        features = model.encode(input_ids, mask)
        out = encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert features.shape == (2, 4, width) and model.feature_size == width
    expected = {
        "last": out[-1],
        "second-to-last": out[-2],
        "concat-last-4": torch.cat(out[-4:], -1),
        "scalar-mix": torch.cat(out, -1),
    }[layers]
    torch.testing.assert_close(features, expected)
    assert model(input_ids, mask).logits.shape == (2, 2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert ("scalar_mix.weights" in trainable) == (layers == "scalar-mix")


def test_scalar_mix_starts_as_the_mean_of_layers() -> None:
    from bertlstm.core.modeling import ScalarMix

    stacked = torch.arange(12.0).reshape(1, 1, 12)  # K=3 layers of H=4
    torch.testing.assert_close(ScalarMix(3)(stacked), torch.tensor([[[4.0, 5.0, 6.0, 7.0]]]))
