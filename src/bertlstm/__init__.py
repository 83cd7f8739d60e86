"""bertlstm: BERT-family encoders feeding an LSTM, for text classification (long documents too) and token tagging.

Importing the package is cheap and changes nothing global: the classes below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
_WHERE = {
    "BertLSTMClassifier": "tasks.classify.estimator",
    "BertLSTMDocumentClassifier": "tasks.document.estimator",
    "BertLSTMError": "core.errors",
    "BertLSTMModel": "tasks.classify.model",
    "BertLSTMTagger": "tasks.tag.estimator",
    "BertTaggerModel": "tasks.tag.model",
    "ClassifierOutput": "tasks.classify.model",
    "ClassifyData": "tasks.classify.config",
    "DataConfig": "core.config",
    "DocumentConfig": "tasks.document.config",
    "LSTMStudent": "tasks.student.estimator",
    "Labels": "tasks.classify.labels",
    "ModelConfig": "tasks.classify.config",
    "RunConfig": "run_config",
    "StudentConfig": "tasks.student.config",
    "TagData": "tasks.tag.config",
    "TaggerConfig": "tasks.tag.config",
    "TrainConfig": "core.config",
    "TuneConfig": "tune",
    "open_model": "deploy.engines",
    "tune_run": "tune",
}
__all__ = [
    "BertLSTMClassifier",
    "BertLSTMDocumentClassifier",
    "BertLSTMError",
    "BertLSTMModel",
    "BertLSTMTagger",
    "BertTaggerModel",
    "ClassifierOutput",
    "ClassifyData",
    "DataConfig",
    "DocumentConfig",
    "LSTMStudent",
    "Labels",
    "ModelConfig",
    "RunConfig",
    "StudentConfig",
    "TagData",
    "TaggerConfig",
    "TrainConfig",
    "TuneConfig",
    "open_model",
    "tune_run",
]

if TYPE_CHECKING:
    from .core.config import DataConfig, TrainConfig
    from .core.errors import BertLSTMError
    from .deploy.engines import open_model
    from .run_config import RunConfig
    from .tasks.classify.config import ClassifyData, ModelConfig
    from .tasks.classify.estimator import BertLSTMClassifier
    from .tasks.classify.labels import Labels
    from .tasks.classify.model import BertLSTMModel, ClassifierOutput
    from .tasks.document.config import DocumentConfig
    from .tasks.document.estimator import BertLSTMDocumentClassifier
    from .tasks.student.config import StudentConfig
    from .tasks.student.estimator import LSTMStudent
    from .tasks.tag.config import TagData, TaggerConfig
    from .tasks.tag.estimator import BertLSTMTagger
    from .tasks.tag.model import BertTaggerModel
    from .tune import TuneConfig, tune_run


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'bertlstm' has no attribute {name!r}")
    from importlib import import_module  # the public names load on first use: importing bertlstm stays cheap

    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
