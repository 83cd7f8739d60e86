"""The one exception type whose message is meant for the user (the CLI prints it and exits 2)."""


class BertLSTMError(ValueError):
    """Bad input or an unusable model: the message says what is wrong and how to fix it."""
