"""An exact LSTM over padded batches, without packing: what an exported graph runs.

``pack_padded_sequence`` does not export to ONNX, so an exported model reads padded batches with a masked
formulation that is exact: a forward LSTM is causal, so its output at each row's last real step has never
seen padding; the backward direction reads each row reversed *within its true length*, so it too starts at
the row's last real step. :class:`MaskedLSTM` does this with a trained ``nn.LSTM``'s weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def reverse_within_length(lengths: Tensor, steps: int) -> Tensor:
    """Indices (B, T) that reverse each row's first ``lengths[b]`` steps and leave its padding in place."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)  # (1, T)
    reversed_t = lengths.unsqueeze(1) - 1 - t  # (B, T)
    return torch.where(reversed_t >= 0, reversed_t, t)


def gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, t]]`` for every row and step: (B, T, D), (B, T) -> (B, T, D)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class MaskedLSTM(nn.Module):
    """A (stacked, bi-)directional ``nn.LSTM`` over padded batches, without packing.

    Built from a trained LSTM: each layer and direction becomes a one-layer LSTM with the same weights.
    :meth:`forward` returns the final states, (B, U) or, bidirectional, (B, 2U): the forward state at each
    row's last real token and the backward state after reading the row back to its first token, as ``h_n``
    of the packed LSTM. :meth:`outputs` returns every step's output, as the packed LSTM's (padded) output.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.directions = 2 if lstm.bidirectional else 1
        self.cells = nn.ModuleList()  # layer by layer: forward, then backward
        for layer in range(lstm.num_layers):
            for suffix in ("", "_reverse")[: self.directions]:
                size = lstm.input_size if layer == 0 else lstm.hidden_size * self.directions
                cell = nn.LSTM(size, lstm.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l{layer}{suffix}").data)
                self.cells.append(cell)

    def outputs(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Every step's output: (B, T, D), (B,) -> (B, T, U) or (B, T, 2U); what padding steps hold is
        unspecified, the real steps are exact."""
        reverse = reverse_within_length(lengths, x.size(1))  # (B, T)
        for layer in range(len(self.cells) // self.directions):
            forward_out, _ = self.cells[layer * self.directions](x)  # (B, T, U), causal: padding comes after
            if self.directions == 1:
                x = forward_out
                continue
            backward_reversed, _ = self.cells[layer * 2 + 1](gather_steps(x, reverse))  # (B, T, U)
            x = torch.cat([forward_out, gather_steps(backward_reversed, reverse)], dim=-1)  # (B, T, 2U)
        return x

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        out = self.outputs(x, lengths)  # (B, T, dirs * U)
        rows, last = torch.arange(x.size(0), device=x.device), lengths - 1  # (B,), (B,)
        if self.directions == 1:
            return out[rows, last]  # (B, U)
        units = out.size(-1) // 2
        # forward state at the last real token, backward state back at token 0: (B, 2U)
        return torch.cat([out[rows, last, :units], out[:, 0, units:]], dim=-1)
