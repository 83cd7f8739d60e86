"""An exact LSTM over padded batches, without packing: what an exported graph runs.

``pack_padded_sequence`` does not export to ONNX, but ONNX's own ``LSTM`` operator reads a length per row
(``sequence_lens``): it stops each row at its last real step and reads it back from there in the reverse
direction, so padding never reaches a real output. :class:`MaskedLSTM` holds a trained ``nn.LSTM``'s weights
in that operator's layout and runs each layer as the custom operator ``bertlstm::lstm_layer``: in PyTorch as
a packed LSTM, in an exported graph as one ``LSTM`` node per layer (:mod:`bertlstm.core.onnx_export`
translates it), whose two directions onnxruntime runs side by side (the masked formulation it replaced ran
them one after the other), and which its int8 quantizer knows.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def onnx_gates(weight: Tensor) -> Tensor:
    """PyTorch's gate order (input, forget, cell, output) as ONNX's (input, output, forget, cell), along dim 0."""
    i, f, g, o = weight.chunk(4, dim=0)
    return torch.cat([i, o, f, g])


def torch_gates(weight: Tensor) -> Tensor:
    """ONNX's gate order as PyTorch's, along dim 0 (the inverse of :func:`onnx_gates`)."""
    i, o, f, g = weight.chunk(4, dim=0)
    return torch.cat([i, f, g, o])


@torch.library.custom_op("bertlstm::lstm_layer", mutates_args=())
def lstm_layer(x: Tensor, lengths: Tensor, w: Tensor, r: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM layer, one or two directions, over each row's first ``lengths[b]`` steps, with the weights of
    ONNX's ``LSTM``: ``w`` (D, 4U, I), ``r`` (D, 4U, U), ``b`` (D, 8U). ``x`` (B, T, I), ``lengths`` (B,) ->
    every step's output (B, T, D*U), zero past each row's length, and the final states (D, B, U)."""
    directions, units = w.size(0), r.size(2)
    params = []
    for d in range(directions):
        params += [torch_gates(w[d]), torch_gates(r[d]), torch_gates(b[d, : 4 * units]), torch_gates(b[d, 4 * units :])]
    # an empty row (no real step: its outputs are all padding) is read for one step rather than refused
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    zeros = x.new_zeros(directions, x.size(0), units)  # (D, B, U): the first states, h and c
    # the packed overload: (data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional)
    out, h_n, _ = torch.lstm(
        packed.data, packed.batch_sizes, (zeros, zeros), params, True, 1, 0.0, False, directions > 1
    )
    steps = PackedSequence(out, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    y, _ = pad_packed_sequence(steps, batch_first=True, total_length=x.size(1))  # (B, T, D*U)
    assert packed.unsorted_indices is not None  # always, with enforce_sorted=False
    return y, h_n.index_select(1, packed.unsorted_indices)  # h_n comes in the packing's order


@lstm_layer.register_fake
def _(x: Tensor, lengths: Tensor, w: Tensor, r: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    directions, units = w.size(0), r.size(2)
    return x.new_empty(x.size(0), x.size(1), directions * units), x.new_empty(directions, x.size(0), units)


LSTM_LAYER = torch.ops.bertlstm.lstm_layer.default  # the operator, as the exporter's translation table names it


class MaskedLSTM(nn.Module):
    """A (stacked, bi-)directional ``nn.LSTM`` over padded batches, without packing.

    Built from a trained LSTM: each layer's weights in ONNX's layout, both directions together.
    :meth:`forward` returns the final states, (B, U) or, bidirectional, (B, 2U): the forward state at each
    row's last real token and the backward state after reading the row back to its first token, as ``h_n``
    of the packed LSTM. :meth:`outputs` returns every step's output, as the packed LSTM's (padded) output.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.layers = lstm.num_layers
        suffixes = ("", "_reverse") if lstm.bidirectional else ("",)
        for layer in range(lstm.num_layers):

            def stacked(name: str, layer: int = layer) -> Tensor:  # (D, 4U, ...) in ONNX's gate order
                return torch.stack([onnx_gates(getattr(lstm, f"{name}_l{layer}{s}").detach()) for s in suffixes])

            self.register_buffer(f"w{layer}", stacked("weight_ih"))  # (D, 4U, I)
            self.register_buffer(f"r{layer}", stacked("weight_hh"))  # (D, 4U, U)
            self.register_buffer(f"b{layer}", torch.cat([stacked("bias_ih"), stacked("bias_hh")], dim=1))  # (D, 8U)

    def _run(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        h_n = x
        for layer in range(self.layers):
            weights = (getattr(self, f"{kind}{layer}") for kind in "wrb")
            x, h_n = LSTM_LAYER(x, lengths, *weights)  # (B, T, D*U), (D, B, U)
        return x, h_n

    def outputs(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Every step's output: (B, T, I), (B,) -> (B, T, U) or (B, T, 2U); what padding steps hold is
        unspecified, the real steps are exact."""
        return self._run(x, lengths)[0]

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h_n = self._run(x, lengths)[1]  # (D, B, U)
        return h_n.transpose(0, 1).flatten(1)  # (B, D*U): forward at the last real token, backward back at token 0
