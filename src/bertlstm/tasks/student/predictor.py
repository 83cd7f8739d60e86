"""The student behind an engine: the classifier's predictor (texts in, labels and probabilities out), for a
model whose graph is word pieces → LSTM → head."""

from __future__ import annotations

from ..classify.predictor import ClassifierPredictor


class StudentPredictor(ClassifierPredictor):
    """Labels and probabilities for texts, from a student's logits; explanations as the classifier's (the
    gradient methods attribute to the student's own word-piece embeddings)."""

    task = "student"  # batches of 32 on a CPU, as an encoder's: faster than 256 by 17-23% (BENCHMARKS.md)
