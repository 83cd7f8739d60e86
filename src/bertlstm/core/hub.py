"""Model folders on the Hugging Face Hub, through ``huggingface_hub``: a repository id (``user/name``) is
downloaded into the Hugging Face cache and then loaded like any local folder (checksums verified,
safetensors only, no code run); pushing saves into a temporary folder first, with the atomic writer."""

from __future__ import annotations

import functools
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from .errors import BertLSTMError, first_line

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def offline() -> bool:
    """Hugging Face's offline mode: the local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub's host answers at all (one TCP connection): an unreachable Hub is then one clear error at
    once, not half a minute of retries. Offline mode says no; behind a proxy this cannot tell, and says yes."""
    if offline():
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return _answers(endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80), timeout)


@functools.lru_cache(maxsize=8)
def _answers(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection (asked once per process: the checks and the loads ask
    again)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_dataset_reachable(spec: str) -> None:
    """A Hugging Face dataset ``hf:NAME[:SPLIT]`` can be had: a local folder, offline mode (the local cache), or
    a Hub that answers; else one clear error at once, not half a minute of retries."""
    name = spec.removeprefix("hf:")
    folder = name.rpartition(":")[0] or name  # NAME[:SPLIT]
    if Path(name).exists() or Path(folder).exists() or offline():
        return
    if not hub_reachable():
        raise BertLSTMError(
            f"could not fetch dataset {name!r}: the Hugging Face Hub cannot be reached. Download it where the Hub is "
            "reachable and give its folder (hf:FOLDER), or set HF_HUB_OFFLINE=1 to use a copy in the local cache"
        )


def is_repo_id(name: str) -> bool:
    """``user/name`` that is not a local path."""
    return bool(_REPO_ID.fullmatch(name)) and not Path(name).exists()


def local_folder(name_or_path: str | os.PathLike) -> Path:
    """A local model folder as given, or the cached download of Hub repository ``user/name``."""
    name = str(name_or_path)
    if not is_repo_id(name):
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download  # only when the Hub is used

    try:  # an unreachable Hub: straight to the local cache, without half a minute of retries
        return Path(snapshot_download(name, repo_type="model", local_files_only=not hub_reachable()))
    except Exception as err:  # offline, no such repository, no access: huggingface_hub raises many kinds
        raise BertLSTMError(
            f"could not fetch model {name!r} from the Hugging Face Hub ({first_line(err)}); download it where "
            "the Hub is reachable (`hf download REPO --local-dir DIR`) and give that folder"
        ) from None


def push_folder(
    save: Callable[[Path], Path], repo_id: str, private: bool | None = None, token: str | None = None
) -> str:
    """``save`` the model into a temporary folder, then upload that folder as ``repo_id``; the repository's URL."""
    from huggingface_hub import HfApi  # only when the Hub is used

    if not _REPO_ID.fullmatch(repo_id):
        raise BertLSTMError(f"{repo_id!r} is not a Hub repository id such as user/name", "repo_id")
    with tempfile.TemporaryDirectory(prefix="bertlstm-push-") as tmp:
        folder = save(Path(tmp) / repo_id.split("/")[1])
        try:
            api = HfApi(token=token)
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload a bertlstm model")
        except Exception as err:  # offline, no token, no rights: huggingface_hub raises many kinds
            raise BertLSTMError(f"could not push to the Hugging Face Hub as {repo_id} ({first_line(err)})") from None
    return str(url)
