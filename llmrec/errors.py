"""Typed errors raised at llmrec's boundaries. The CLI turns any `LlmrecError` into a one-line message."""

from __future__ import annotations


class LlmrecError(Exception):
    """Base class of every error llmrec raises on bad input or a missing resource."""


class DataFormatError(LlmrecError):
    """A data file is malformed. The message names the file, the line and what was expected."""

    def __init__(self, path: object, line: int | None, message: str) -> None:
        where = f"{path}" if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class AssetError(LlmrecError):
    """An asset could not be fetched or is not where it should be."""


class ConfigError(LlmrecError):
    """A configuration has an unknown key, a wrong type or an invalid value."""


class UnknownIdError(LlmrecError, KeyError):
    """A user or item id is not in the dataset."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LlmrecWarning(UserWarning):
    """Something works but probably not as meant (e.g. an adapter used in another scoring mode than it was
    trained for). The CLI prints these as one ``warning:`` line each."""


class LlmSkippedWarning(LlmrecWarning):
    """A `Reranker` does not run its LLM: the adapter card's score fusion gives it weight 0 (fit on validation
    users); the message gives the evidence and how to force it. The CLI prints it as a ``note:`` line."""


class OlderCardWarning(LlmrecWarning):
    """An adapter card made by an older llmrec lacks a setting this version would use (score-fusion weights,
    the collaborative-evidence setting); the message names the adapter and what refits it."""
