"""The one exception type whose message is meant for the user (the CLI prints it and exits 2), and the one
warning type (the CLI shows these, and no other library's warnings unless ``-v``)."""

from __future__ import annotations


class BertLSTMError(ValueError):
    """Bad input or an unusable model: the message says what is wrong and how to fix it.

    ``setting`` names the configuration field the message is about (``"max_length"``), so that a front end
    can point at its own spelling of it (the CLI adds ``--max-length``).
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class BertLSTMWarning(UserWarning):
    """Something the user should know about their data or model, though the work goes on."""


def missing_package(error: ImportError, extra: str) -> BertLSTMError:
    """The error for an optional package that is not installed, with the command that installs it."""
    return BertLSTMError(f"this needs the {error.name or 'missing'} package: pip install 'bertlstm[{extra}]'")


def needs_packages(names: tuple[str, ...], extra: str) -> None:
    """Refuse at once, before any work, when an optional package is not installed (nothing is imported)."""
    import importlib.util  # the standard library's finder: nothing is imported

    for name in names:
        if importlib.util.find_spec(name) is None:
            raise missing_package(ImportError(name=name), extra)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a one-line error
    quotes of a third-party failure."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
