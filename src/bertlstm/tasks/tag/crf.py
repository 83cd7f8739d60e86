"""A linear-chain conditional random field over per-word emission scores, batched on tensors.

Given emissions ``E`` (B, W, C) and a mask of real words (B, W), a tag path ``y`` scores
``start[y_0] + sum_t E[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_last]``. Training minimises the negative
log-likelihood ``log Z - score(gold)``, where the log-partition ``log Z`` comes from the forward algorithm;
decoding is Viterbi. Both run one loop over word positions, every sentence of the batch at once; a sentence's
padding positions carry its state forward unchanged, so they never change its score.

Tag schemes have moves that are never valid (in IOB2, ``O`` then ``I-PER``; ``B-PER`` then ``I-LOC``).
:func:`allowed_transitions` lists them, and :class:`CRF` takes a mask of allowed moves that decoding obeys
(a forbidden move scores ``-inf``), so that decoded paths are always well-formed entities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

NEG_INF = -1e4  # a score no allowed path reaches: exp() of it is 0 in float32, and it never makes NaN


class CRF(nn.Module):
    """Transition scores between ``num_tags`` tags, with start and end scores; ``allowed`` (C+2 rules, see
    :func:`allowed_transitions`) forbids moves at decoding time."""

    def __init__(self, num_tags: int, allowed: tuple[Tensor, Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        ones = torch.ones(num_tags, dtype=torch.bool)
        start_ok, trans_ok, end_ok = allowed if allowed is not None else (ones, ones.outer(ones), ones)
        # Buffers, so that they move with the module; not saved (persistent=False): they follow from the tag names,
        # which the model folder keeps, so a loaded model rebuilds them and decodes the same way.
        self.register_buffer("start_allowed", start_ok.clone(), persistent=False)
        self.register_buffer("transitions_allowed", trans_ok.clone(), persistent=False)
        self.register_buffer("end_allowed", end_ok.clone(), persistent=False)

    def _scores(self, constrained: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Start (C,), transition (C, C) and end (C,) scores; forbidden moves at NEG_INF when ``constrained``."""
        if not constrained:
            return self.start, self.transitions, self.end
        start_ok, trans_ok, end_ok = self.start_allowed, self.transitions_allowed, self.end_allowed
        assert isinstance(start_ok, Tensor) and isinstance(trans_ok, Tensor) and isinstance(end_ok, Tensor)
        return (
            self.start.masked_fill(~start_ok, NEG_INF),
            self.transitions.masked_fill(~trans_ok, NEG_INF),
            self.end.masked_fill(~end_ok, NEG_INF),
        )

    def log_partition(self, emissions: Tensor, mask: Tensor, constrained: bool = False) -> Tensor:
        """log Z per sentence: (B, W, C), (B, W) -> (B,). Every sentence has at least one real word, first."""
        start, trans, end = self._scores(constrained)
        alpha = start + emissions[:, 0]  # (B, C): log-sum of the scores of every path ending in each tag
        for t in range(1, emissions.size(1)):
            # (B, C_from, 1) + (C_from, C_to) + (B, 1, C_to) -> log-sum over C_from -> (B, C_to)
            step = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)  # padding keeps the state
        return torch.logsumexp(alpha + end, dim=1)  # (B,)

    def path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """The score of the tag paths ``tags`` (B, W) (anything at padding): (B,)."""
        maskf = mask.to(emissions.dtype)  # (B, W)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, W): E[t, y_t]
        moves = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, W-1): trans[y_{t-1}, y_t]
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (B,): each sentence's last tag
        return (
            self.start[tags[:, 0]]
            + (emitted * maskf).sum(1)
            + (moves * maskf[:, 1:]).sum(1)  # a move into a real word; real words come first
            + self.end[last]
        )

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of the gold ``tags``, summed over the batch: a scalar. Unconstrained: the
        gold paths are valid, and the model learns by itself to give invalid moves low scores."""
        emissions = emissions.float()
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)).sum()

    def decode(self, emissions: Tensor, mask: Tensor, constrained: bool = True) -> Tensor:
        """The best tag path per sentence (Viterbi): (B, W, C), (B, W) -> (B, W) tag ids, 0 at padding."""
        start, trans, end = self._scores(constrained)
        emissions = emissions.float()
        batch, words, _ = emissions.shape
        score = start + emissions[:, 0]  # (B, C): best score of a path ending in each tag
        backpointers = []
        for t in range(1, words):
            best, previous = (score.unsqueeze(2) + trans).max(dim=1)  # (B, C_to) over C_from
            step = best + emissions[:, t]
            real = mask[:, t].unsqueeze(1)  # (B, 1)
            score = torch.where(real, step, score)
            # At padding, point every tag to itself, so that the backtrace walks through unchanged.
            identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
            backpointers.append(torch.where(real, previous, identity))  # (B, C)
        best_last = (score + end).argmax(dim=1)  # (B,)
        path = [best_last]
        for pointers in reversed(backpointers):
            path.append(pointers.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        tags = torch.stack(path[::-1], dim=1)  # (B, W)
        return tags.masked_fill(~mask, 0)


def allowed_transitions(tags: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Which tags may start a sentence (C,), follow each tag (C_from, C_to) and end one (C,), for IOB2 or
    BIOES tag names (``O``, ``B-X``, ``I-X``, and for BIOES ``E-X``, ``S-X``)."""
    parts = [(t.split("-", 1)[0], t.split("-", 1)[1]) if "-" in t else (t, "") for t in tags]

    def may_follow(prev: tuple[str, str] | None, nxt: tuple[str, str] | None) -> bool:
        """``nxt`` after ``prev``; None is the sentence's start (as prev) or end (as nxt)."""
        open_ = prev is not None and prev[0] in ("B", "I")  # an entity that is still going on
        if nxt is not None and nxt[0] in ("I", "E"):
            return open_ and prev is not None and prev[1] == nxt[1]  # continues the same entity
        bioes = any(p[0] in ("E", "S") for p in parts)
        return not (bioes and open_)  # in BIOES, B and I must be continued (I) or closed (E)

    start = torch.tensor([may_follow(None, p) for p in parts])
    trans = torch.tensor([[may_follow(a, b) for b in parts] for a in parts])
    end = torch.tensor([may_follow(p, None) for p in parts])
    return start, trans, end
