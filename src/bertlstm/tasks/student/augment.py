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
) -> tuple[list[str], int]:
    """The transfer set: ``texts`` first (each once, in order), then ``copies`` augmented copies of each, then
    ``unlabeled``; no text twice. Returns it and how many of it are ``texts`` (the ones with gold labels)."""
    seen: dict[str, None] = dict.fromkeys(texts)
    originals = len(seen)
    vocabulary = [word for text in texts for word in text.split()]
    rng = random.Random(seed)
    for text in texts if copies else ():
        words = text.split()
        for _ in range(copies):
            made = copy_of(words, vocabulary, rules, rng)
            if made.strip():
                seen.setdefault(made)
    for text in unlabeled:
        seen.setdefault(text)
    return list(seen), originals
