"""Finding and loading the pre-trained encoder and its tokenizer: local folders never touch the network and
no loader ever runs code shipped with a model (``trust_remote_code=False``, everywhere)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .encoder_names import hub_error, resolve_encoder
from .errors import BertLSTMError, first_line
from .hub import hub_reachable
from .quiet import quiet_transformers


def load_encoder(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder model and its fast tokenizer; one clear error if either cannot be had."""
    where = resolve_encoder(name)
    safe = {"trust_remote_code": False, "local_files_only": _local_only(where)}
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where, **safe)
            model = AutoModel.from_pretrained(where, **safe)
    except (OSError, ValueError) as err:
        if isinstance(err, BertLSTMError):
            raise
        if Path(where).exists():
            raise BertLSTMError(f"could not load encoder from {where}: {first_line(err)}") from None
        raise hub_error(name) from None
    if not getattr(tokenizer, "is_fast", False):
        raise BertLSTMError(f"encoder {where} has no fast tokenizer (tokenizer.json); bertlstm needs one")
    return model, tokenizer


def _local_only(where: str) -> bool:
    """A folder never goes online; a hub id does only when the Hub answers (else the local cache, at once)."""
    return Path(where).exists() or not hub_reachable()
