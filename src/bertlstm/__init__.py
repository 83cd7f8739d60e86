"""bertlstm: BERT-family encoders feeding an LSTM, for text classification and token tagging.

Importing the package is cheap and changes nothing global: the classes below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "BertLSTMClassifier",
    "BertLSTMError",
    "BertLSTMModel",
    "BertLSTMTagger",
    "BertTaggerModel",
    "ClassifierOutput",
    "DataConfig",
    "Labels",
    "ModelConfig",
    "RunConfig",
    "TaggerConfig",
    "TrainConfig",
]
_WHERE = {
    "BertLSTMClassifier": "classifier",
    "BertLSTMError": "errors",
    "BertLSTMModel": "modeling",
    "BertLSTMTagger": "tagger",
    "BertTaggerModel": "tagging",
    "ClassifierOutput": "modeling",
    "DataConfig": "config",
    "Labels": "labels",
    "ModelConfig": "config",
    "RunConfig": "config",
    "TaggerConfig": "config",
    "TrainConfig": "config",
}

if TYPE_CHECKING:
    from .classifier import BertLSTMClassifier
    from .config import DataConfig, ModelConfig, RunConfig, TaggerConfig, TrainConfig
    from .errors import BertLSTMError
    from .labels import Labels
    from .modeling import BertLSTMModel, ClassifierOutput
    from .tagger import BertLSTMTagger
    from .tagging import BertTaggerModel


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'bertlstm' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
