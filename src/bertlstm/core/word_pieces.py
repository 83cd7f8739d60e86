"""A tokenizer kept as its files, without the encoder it came with: what a model folder holds in ``tokenizer/``
when its model has no encoder (a distilled student, which reads its teacher's word pieces).

:class:`TokenizerFiles` answers what the estimators and predictors ask of a tokenizer (its special ids, its size,
its word-piece rules as a ``tokenizers.Tokenizer``) from those files and the ids recorded beside them, without
transformers, and copies the files into a model folder, each checked against the SHA-256 it was read with.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from .errors import BertLSTMError

# What transformers keeps of a tokenizer: tokenizer.json holds the rules; the others describe it to transformers.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SPECIAL = ("pad", "cls", "sep", "unk", "mask")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TokenizerFiles:
    """The files of a tokenizer in ``folder`` (``tokenizer.json`` at least), its special token ids (``special``:
    pad, cls, sep, unk and mask; None where it has none) and its size (added tokens included)."""

    def __init__(self, folder: Path, special: dict[str, int | None], size: int, files: dict[str, str] | None = None):
        if not (folder / "tokenizer.json").is_file():
            raise BertLSTMError(f"{folder} has no tokenizer.json (the word-piece rules)")
        self.folder, self.special, self.size = folder, dict(special), size
        self.files = files if files is not None else {n: _sha256(folder / n) for n in self.names()}
        self._plain: Any = None

    @classmethod
    def read(cls, folder: Path, recorded: dict[str, int | None] | None = None) -> TokenizerFiles:
        """The tokenizer in ``folder``; its special ids from its own files, those ``recorded`` (in a model's
        config.json) taking precedence."""
        plain = _load(folder / "tokenizer.json")
        special = {**special_ids(folder, plain), **(recorded or {})}
        return cls(folder, special, plain.get_vocab_size(with_added_tokens=True))

    def names(self) -> list[str]:
        return [n for n in TOKENIZER_FILES if (self.folder / n).is_file()]

    def __getattr__(self, name: str) -> Any:
        kind = name.removesuffix("_token_id")
        if name.endswith("_token_id") and kind in SPECIAL:
            return self.special.get(kind)
        raise AttributeError(name)

    def __len__(self) -> int:
        return self.size

    @property
    def backend_tokenizer(self) -> Any:
        """The word-piece rules (a ``tokenizers.Tokenizer``), as :func:`~bertlstm.core.backends.plain_tokenizer`
        reads a transformers tokenizer's."""
        if self._plain is None:
            self._plain = _load(self.folder / "tokenizer.json")
        return self._plain

    def token(self, kind: str) -> str | None:
        """The text of a special token (``mask``: ``[MASK]`` for BERT), or None."""
        token_id = self.special.get(kind)
        return None if token_id is None else self.backend_tokenizer.id_to_token(token_id)

    def copy_to(self, folder: Path) -> dict[str, str]:
        """The files into ``folder``, each checked against the SHA-256 it was read with; returns those."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, digest in self.files.items():
            shutil.copyfile(self.folder / name, folder / name)
            if _sha256(folder / name) != digest:
                raise BertLSTMError(f"{self.folder / name} changed since it was read; the model was not saved")
        return dict(self.files)

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenizerFiles:
        return TokenizerFiles(self.folder, self.special, self.size, self.files)


def _load(path: Path) -> Any:
    from tokenizers import Tokenizer  # light, and only when texts are tokenized

    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001  a torn or foreign file: tokenizers raises its own kinds
        raise BertLSTMError(f"{path} is not a tokenizer's rules: {str(err).splitlines()[0]}") from None


def special_ids(folder: Path, plain: Any) -> dict[str, int | None]:
    """Special token ids from a tokenizer's own files: ``tokenizer_config.json``'s tokens (``[PAD]``, ...), or
    BERT's names where it has none."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    found: dict[str, int | None] = {}
    for kind in SPECIAL:
        token = config.get(f"{kind}_token") if isinstance(config, dict) else None
        token = token.get("content") if isinstance(token, dict) else token
        found[kind] = plain.token_to_id(token if isinstance(token, str) else f"[{kind.upper()}]")
    return found
