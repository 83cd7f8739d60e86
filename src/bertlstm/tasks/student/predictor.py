"""The student behind an engine: the classifier's predictor (texts in, labels and probabilities out), for a
model whose graph is word pieces → LSTM → head."""

from __future__ import annotations

from ..classify.predictor import ClassifierPredictor


class StudentPredictor(ClassifierPredictor):
    """Labels and probabilities for texts, from a student's logits; explanations as the classifier's (the
    gradient methods attribute to the student's own word-piece embeddings)."""

    task = "student"
    cpu_batch = 256  # an LSTM alone: large batches, unlike an encoder's, run fastest (BENCHMARKS.md)
