"""Why a model said what it said: a score per word for one output (a label's probability), by one of three
methods, so that they can be compared.

* ``integrated-gradients`` (Sundararajan et al. 2017, through Captum's ``LayerIntegratedGradients``): the
  gradient of the score along the straight path from a baseline to the text, integrated over the word-piece
  embeddings, ``steps`` points, all in one batch. The baseline keeps ``[CLS]`` and ``[SEP]`` and puts the
  padding token in every other place. *Completeness*: the scores sum to the score of the text minus the score
  of the baseline; both are reported per text, and their gap shows how well ``steps`` approximates the
  integral.
* ``gradient-x-input``: one backward pass, the gradient of the score times the word-piece embeddings.
* ``occlusion``: each word left out in turn (its pieces removed, not masked); a word's score is how much the
  text's score drops without it. One batch of as many texts as words; any engine runs it (an export too).

The gradient methods attribute to word-piece embeddings (the model's ``get_input_embeddings()``); gradients flow
through a frozen encoder while :func:`gradients_to_inputs` is on. **Words**: a word is what the encoder's
pre-tokenizer splits a text into (at spaces and punctuation: "film," is "film" and ","); a word's score is the
sum of its pieces' scores, so that word scores keep completeness. Special tokens carry no word. Words the
model does not read (past ``max_length``, or the middle a head-tail cut leaves out) are not in an explanation.

**Long documents** (:func:`window_gradient_scores`): a document is read as windows, each encoded alone to a
vector, then an LSTM over the vectors. The gradient methods run in those two halves too, so that memory is
bounded by a batch of windows, not by the document: every point of the path is encoded without gradients;
the score's gradient with respect to the window vectors comes from the LSTM and head alone; then each batch of
windows is encoded again and that gradient is carried back to its pieces' embeddings. The path's points and
weights are Gauss-Legendre's (as Captum's default). A piece that two windows share (``chunk_stride``) scores
the sum of both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import BertLSTMError

METHODS = ("integrated-gradients", "gradient-x-input", "occlusion")
Score = Callable[[Tensor, Tensor], Tensor]  # (input_ids (B, T), attention_mask (B, T)) -> one score per row (B,)


@dataclass(frozen=True)
class Pieces:
    """A text as the model reads it: its word-piece ids, and which word each piece belongs to."""

    ids: list[int]  # special tokens included
    word_of: list[int | None]  # per piece, the index of its word in ``words`` (None: a special token)
    words: list[str]  # the words read, in text order

    @classmethod
    def of(cls, encoding: Any, text: str, kept: list[int] | None = None) -> Pieces:
        """From a ``tokenizers`` encoding of ``text``; ``kept``: the positions the model reads (a head-tail
        cut), else all."""
        positions = kept if kept is not None else list(range(len(encoding.ids)))
        place: dict[int, int] = {}  # the tokenizer's word id -> its place among the words read
        spans: list[list[int]] = []  # per word read: [first char, end char]
        word_of: list[int | None] = []
        for p in positions:
            word, (start, end) = encoding.word_ids[p], encoding.offsets[p]
            if word is None:
                word_of.append(None)
                continue
            if word not in place:
                place[word] = len(spans)
                spans.append([start, end])
            spans[place[word]][1] = max(spans[place[word]][1], end)
            word_of.append(place[word])
        ids = [encoding.ids[p] for p in positions]
        return cls(ids, word_of, [text[start:end] for start, end in spans])

    def word_scores(self, piece_scores: np.ndarray) -> list[dict[str, Any]]:
        """Per word its text and the sum of its pieces' scores, in text order."""
        sums = np.zeros(len(self.words), dtype=np.float64)
        for score, word in zip(piece_scores, self.word_of, strict=True):
            if word is not None:
                sums[word] += float(score)
        return [{"word": w, "score": round(float(s), 6)} for w, s in zip(self.words, sums, strict=True)]

    def without_word(self, word: int) -> list[int]:
        return [i for i, w in zip(self.ids, self.word_of, strict=True) if w != word]


@contextmanager
def gradients_to_inputs(model: Any) -> Iterator[None]:
    """Gradients flow through the encoder (frozen or not) down to its inputs, dropout off: how a gradient
    method reads a model. Restored afterwards."""
    was_training, was_attributing = model.training, getattr(model, "attributing", False)
    model.eval()
    model.attributing = True
    try:  # cuDNN's LSTM runs backward only in training mode: the plain kernels here
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        model.attributing = was_attributing
        model.train(was_training)


def check_method(method: str, steps: int) -> None:
    if method not in METHODS:
        raise BertLSTMError(f"`explain_method` must be one of {', '.join(METHODS)}, not {method!r}", "explain_method")
    if method == "integrated-gradients":
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise BertLSTMError(f"`explain_steps` must be a whole number of at least 2, not {steps!r}", "explain_steps")


def gradient_scores(
    model: Any, score: Score, pieces: Pieces, pad_id: int, method: str, steps: int, device: torch.device
) -> tuple[np.ndarray, dict[str, float] | None]:
    """Per piece the score's attribution (T,), by integrated gradients (with its completeness check:
    ``attribution_sum`` against ``score_difference``) or gradient x input (no check)."""
    embeddings = model.get_input_embeddings()
    ids = torch.tensor([pieces.ids], device=device)  # (1, T)
    mask = torch.ones_like(ids)  # (1, T)
    with gradients_to_inputs(model):
        if method == "gradient-x-input":
            from captum.attr import LayerGradientXActivation  # the explain extra, only for this method

            attributions = LayerGradientXActivation(score, embeddings).attribute(ids, additional_forward_args=(mask,))
            return attributions.sum(-1)[0].detach().cpu().numpy(), None  # (T,)
        from captum.attr import LayerIntegratedGradients  # the explain extra, only for this method

        specials = torch.tensor([w is None for w in pieces.word_of], device=device)  # (T,)
        baseline = torch.where(specials, ids, torch.full_like(ids, pad_id))  # (1, T): [CLS] pad ... pad [SEP]
        attributions = LayerIntegratedGradients(score, embeddings).attribute(
            ids, baselines=baseline, additional_forward_args=(mask,), n_steps=steps, internal_batch_size=steps
        )  # (1, T, H)
        per_piece = attributions.sum(-1)[0].detach().cpu().numpy()  # (T,)
        with torch.no_grad():  # the path's two ends: the baseline's word embeddings at the text's positions
            at_text = float(score(ids, mask)[0])
            swapped = embeddings(baseline)  # (1, T, H)
            hook = embeddings.register_forward_hook(lambda module, args, output: swapped)
            try:
                difference = at_text - float(score(ids, mask)[0])
            finally:
                hook.remove()
    return per_piece, {"attribution_sum": round(float(per_piece.sum()), 6), "score_difference": round(difference, 6)}


def path_points(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Where on the path from the baseline (0) to the text (1) gradients are taken, and each point's weight:
    Gauss-Legendre's ``steps`` points for integrated gradients, the text alone for gradient x input."""
    if method == "gradient-x-input":
        return np.ones(1), np.ones(1)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2  # from [-1, 1] to [0, 1]


def padded_windows(windows: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Windows as ids and mask (Nw, T), and the baseline (Nw, T): [CLS] pad ... pad [SEP], then padding."""
    longest = max(len(w) for w in windows)
    ids = torch.tensor([w + [pad_id] * (longest - len(w)) for w in windows], device=device)
    mask = torch.tensor([[1] * len(w) + [0] * (longest - len(w)) for w in windows], device=device)
    inner = torch.tensor([[0] + [1] * (len(w) - 2) + [0] * (longest - len(w) + 1) for w in windows], device=device)
    return ids, mask, torch.where(inner.bool(), torch.full_like(ids, pad_id), ids)


@dataclass
class WindowPath:
    """A document's windows on the straight path from their baseline to their text: the window vectors at any
    of its points, with the embeddings' output swapped for the point's."""

    model: Any  # with encoder and window_vectors(input_ids, attention_mask) (n, T) -> (n, D)
    ids: Tensor  # (Nw, T)
    mask: Tensor  # (Nw, T)
    text: Tensor  # (Nw, T, H): the windows' word-piece embeddings
    base: Tensor  # (Nw, T, H): the baseline's
    alpha: Tensor  # (S,): where the path's points are, 0 (baseline) to 1 (text)

    def points(self, part: Tensor) -> Tensor:
        """(point, window) pairs (n, 2) -> the path's points (n, T, H)."""
        window = part[:, 1]
        return self.base[window] + self.alpha[part[:, 0]].view(-1, 1, 1) * (self.text[window] - self.base[window])

    def vectors(self, rows: Tensor, points: Tensor) -> Tensor:
        """The vectors (n, D) of windows ``rows`` (n,) at ``points`` (n, T, H)."""
        embeddings = self.model.get_input_embeddings()
        hook = embeddings.register_forward_hook(lambda module, args, output: points)
        try:
            return self.model.window_vectors(self.ids[rows], self.mask[rows])
        finally:
            hook.remove()


def window_gradient_scores(
    model: Any,
    score: Callable[[Tensor], Tensor],
    windows: list[list[int]],
    pad_id: int,
    method: str,
    steps: int,
    batch_size: int,
    device: torch.device,
) -> tuple[list[np.ndarray], dict[str, float] | None]:
    """Per window (``windows``: one document's, special tokens included) its pieces' attributions, by
    integrated gradients (with the completeness check) or gradient x input, in two halves (see the module).

    ``model`` has ``window_vectors(input_ids, attention_mask)`` (Nw, T) -> (Nw, D) and ``score`` maps the
    window vectors of documents (S, Nw, D) to one score per document (S,)."""
    embeddings = model.get_input_embeddings()
    ids, mask, baseline = padded_windows(windows, pad_id, device)  # (Nw, T) each
    alphas, weights = path_points(method, steps)
    with gradients_to_inputs(model):
        with torch.no_grad():
            text, base = embeddings(ids), embeddings(baseline)  # (Nw, T, H)
        path = WindowPath(model, ids, mask, text, base, torch.tensor(alphas, dtype=text.dtype, device=device))
        pairs = torch.cartesian_prod(torch.arange(len(alphas)), torch.arange(len(windows))).to(device)  # (S*Nw, 2)
        parts = torch.split(pairs, batch_size)
        with torch.no_grad():  # 1. every point's window vectors
            found = torch.cat([path.vectors(part[:, 1], path.points(part)) for part in parts])  # (S*Nw, D)
        found = found.view(len(alphas), len(windows), -1).requires_grad_()  # (S, Nw, D)
        weight = torch.tensor(weights, dtype=text.dtype, device=device)  # (S,)
        (to_vectors,) = torch.autograd.grad((score(found) * weight).sum(), found)  # 2. the head's gradient
        total = torch.zeros_like(text)  # (Nw, T, H): the weighted sum of the gradients along the path
        for part, upstream in zip(parts, torch.split(to_vectors.flatten(0, 1), batch_size), strict=True):
            at = path.points(part).requires_grad_()  # 3. back through the encoder, a batch of windows at a time
            (grads,) = torch.autograd.grad(path.vectors(part[:, 1], at), at, upstream)
            total.index_add_(0, part[:, 1], grads)
        with torch.no_grad():
            per_piece = ((text if method == "gradient-x-input" else text - base) * total).sum(-1) * mask  # (Nw, T)
            scores = [row[: len(w)].cpu().numpy() for row, w in zip(per_piece, windows, strict=True)]
            if method == "gradient-x-input":
                return scores, None
            everything = torch.arange(len(windows), device=device)
            ends = torch.stack([path.vectors(everything, base), path.vectors(everything, text)])  # (2, Nw, D)
            at_base, at_text = score(ends).tolist()
    attributed = float(sum(s.sum() for s in scores))
    return scores, {"attribution_sum": round(attributed, 6), "score_difference": round(at_text - at_base, 6)}


def occlusion_scores(pieces: Pieces, scores: Callable[[list[list[int]]], np.ndarray]) -> list[dict[str, Any]]:
    """Per word the drop of the score when the word is left out; ``scores``: one score per id list, in one
    batch."""
    variants = [pieces.ids] + [pieces.without_word(w) for w in range(len(pieces.words))]
    values = scores(variants)  # (1 + words,)
    drops = values[0] - values[1:]
    return [{"word": w, "score": round(float(d), 6)} for w, d in zip(pieces.words, drops, strict=True)]
