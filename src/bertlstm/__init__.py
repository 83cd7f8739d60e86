"""bertlstm: BERT-family encoders feeding an LSTM, for text classification."""

from .classifier import BertLSTMClassifier
from .config import ModelConfig, TrainConfig
from .errors import BertLSTMError
from .modeling import BertLSTMModel, ClassifierOutput

__version__ = "0.1.0"
__all__ = ["BertLSTMClassifier", "BertLSTMError", "BertLSTMModel", "ClassifierOutput", "ModelConfig", "TrainConfig"]
