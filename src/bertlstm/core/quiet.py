"""Third-party output kept out of the way: transformers' "Loading weights" and "Writing model shards" bars and
its notes say nothing a bertlstm user can act on, so loads and saves run with them off, and put back after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' (and the Hub's) progress bars off and its logging at errors only, for the duration."""
    from transformers.utils import logging as hf_logging  # loaded already by whoever loads or saves a model

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity(max(level, hf_logging.ERROR))
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
