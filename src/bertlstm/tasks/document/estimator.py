"""The user-facing document classifier: the classifier's estimator (labels, training, metrics, folders), with
documents read whole in windows (:mod:`.windows`) by the model in :mod:`.model`, and predicted in two halves
(:mod:`.predictor`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.backends import plain_tokenizer
from ...core.export_graph import ExportGraph
from ...core.inference import as_tensors
from ...core.model_card import CardInfo
from ...core.torch_engine import TorchEngine
from ..classify.config import ModelConfig
from ..classify.estimator import BertLSTMClassifier
from .config import DocumentConfig
from .export import export_graphs
from .model import BertLSTMDocumentModel, DocumentHead, WindowEncoder
from .predictor import DocumentPredictor
from .windows import DocumentDataset, Windows, document_pieces, first_and_last


class BertLSTMDocumentClassifier(BertLSTMClassifier):
    """A BERT-family encoder over each window of a long document, and an LSTM over the windows' vectors, as a
    scikit-learn classifier.

    Every field of :class:`DocumentConfig` (the classifier's, with ``chunk_length``, ``chunk_stride``,
    ``chunk_pooling`` and ``max_chunks``) and of :class:`~bertlstm.core.config.TrainConfig` is a keyword argument.

    Example:
        >>> clf = BertLSTMDocumentClassifier(max_length=256, epochs=3).fit(reviews, labels)
        >>> clf.predict(["A very long review ..."])
    """

    task = "documents"
    noun = "document classifier"
    config_class = DocumentConfig
    predictor_class = DocumentPredictor
    card = CardInfo("text-classification", "BertLSTMDocumentClassifier", "predict", "BERT→LSTM document classifier")

    def _new_model(self, config: ModelConfig, encoder: Any) -> BertLSTMDocumentModel:
        assert isinstance(config, DocumentConfig)
        return BertLSTMDocumentModel(config, encoder, len(self.labels_))

    def _dataset(self, examples: tuple[list[str], list[Any]], what: str, trainer: Any = None) -> DocumentDataset:
        """Documents in windows; for a frozen (or partly fine-tuned) encoder with the cache on, the windows'
        vectors (or the frozen layers' states) from the feature cache, keyed by each window's pieces. While the
        encoder trains, ``max_chunks`` windows at most per document."""
        texts, targets = examples
        model, tokenizer = self.model_, self.tokenizer_
        cutter = Windows(model.config.window, model.config.chunk_stride, tokenizer.cls_token_id, tokenizer.sep_token_id)
        documents = [cutter(pieces) for pieces in document_pieces(plain_tokenizer(tokenizer, None), texts)]
        if not model.encoder_frozen:
            documents = [first_and_last(windows, model.config.max_chunks) for windows in documents]
        windows = [w for document in documents for w in document]
        keys = [" ".join(map(str, w)) for w in windows]
        store = self._cached(keys, lambda: windows, f"windows of {what} documents", trainer)
        return DocumentDataset(documents, targets, self.pad_id, store)

    def predictor(self, precision: str | None = None, batch_size: int | None = None) -> DocumentPredictor:
        """This trained model behind two PyTorch engines: its window encoder, and its LSTM and head."""
        model = self._require_model()
        windows = TorchEngine(WindowEncoder(model).eval(), self.device_, precision)  # the model stays as it is
        reader = TorchEngine(DocumentHead(model).eval(), self.device_, precision)
        tokenizer = plain_tokenizer(self.tokenizer_, None)
        return DocumentPredictor(reader, self.describe(), tokenizer, batch_size, windows=windows)

    def export_graph(self) -> ExportGraph:
        return self.export_graphs()[0]

    SPANS = (1, 3, 2, 5)  # windows of the check documents, by position: no two axes of a batch the same size

    def spanning(self, texts: Sequence[str]) -> list[str]:
        """Text ``i`` repeated until it fills ``SPANS[i % 4]`` windows."""
        tokenizer, window = plain_tokenizer(self.tokenizer_, None), self._require_model().config.window
        out = []
        for i, text in enumerate(texts):
            pieces = max(1, len(tokenizer.encode(text, add_special_tokens=False).ids))
            wanted = (self.SPANS[i % len(self.SPANS)] - 1) * window  # pieces past the first window
            out.append(" ".join([text] * (1 + -(-wanted // pieces))))
        return out

    def export_graphs(self) -> list[ExportGraph]:
        """The document reader and the window encoder, each with its check batches and the model's output. The
        check texts become documents of several windows (:meth:`spanning`), so that the window axis varies in
        the batches the graphs are exported and checked on, as it does in use."""
        reader, encoder = export_graphs(self._require_model())
        predictor, model = self.predictor(), self._require_model()
        reader.sample = lambda texts: predictor.head_batch_of(self.spanning(texts))
        encoder.sample = lambda texts: predictor.batch_of(self.spanning(texts))
        reader.reference = lambda batch: DocumentHead(model)(**as_tensors(batch)).detach().numpy()
        encoder.reference = lambda batch: WindowEncoder(model)(**as_tensors(batch)).detach().numpy()
        return [reader, encoder]
