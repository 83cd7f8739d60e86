"""The transfer set a student learns from (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into
Simple Neural Networks"): the training texts, augmented copies of them, and texts without labels.

A copy goes word by word (words as whitespace cuts them): with ``mask_prob`` a word becomes the mask token, with
``replace_prob`` another word of the training texts (drawn as often as it occurs: the paper drew one of the same
part of speech); then, with ``ngram_prob``, the copy is cut down to one of its n-grams, n from 1 to 5. Copies
the set holds already are dropped, so that the teacher never scores one text twice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rules:
    """How a copy is made (the paper's probabilities by default)."""

    mask_token: str | None  # the teacher's ([MASK]); None: no word is masked
    mask_prob: float = 0.1
    replace_prob: float = 0.1
    ngram_prob: float = 0.25


def copy_of(words: Sequence[str], vocabulary: Sequence[str], rules: Rules, rng: random.Random) -> str:
    """One augmented copy of a text's ``words``."""
    out = []
    for word in words:
        draw = rng.random()
        if draw < rules.mask_prob and rules.mask_token is not None:
            out.append(rules.mask_token)
        elif draw < rules.mask_prob + rules.replace_prob and vocabulary:
            out.append(rng.choice(vocabulary))
        else:
            out.append(word)
    if len(out) > 1 and rng.random() < rules.ngram_prob:
        n = rng.randint(1, min(5, len(out)))
        start = rng.randrange(len(out) - n + 1)
        out = out[start : start + n]
    return " ".join(out)


def transfer_set(
    texts: Sequence[str], copies: int, rules: Rules, seed: int, unlabeled: Sequence[str] = ()
) -> list[list[str]]:
    """The transfer set in parts: ``texts`` (each once, in order), then for ``j`` in 1..``copies`` the ``j``-th
    augmented copy of each text, then ``unlabeled``; no text twice. The ``j``-th copies are drawn with their own
    seed, so that a set with more copies holds the parts of one with fewer: the teacher scores each part once
    (:func:`~bertlstm.tasks.student.teacher.teacher_logits` keeps them one by one)."""
    seen: dict[str, None] = dict.fromkeys(texts)
    parts = [list(seen)]
    vocabulary = [word for text in texts for word in text.split()]
    split = [text.split() for text in texts]
    for j in range(1, copies + 1):
        rng = random.Random(f"{seed}-{j}")
        part = []
        for words in split:
            made = copy_of(words, vocabulary, rules, rng)
            if made.strip() and made not in seen:
                seen[made] = None
                part.append(made)
        parts.append(part)
    parts.append([text for text in dict.fromkeys(unlabeled) if text not in seen])
    return parts
