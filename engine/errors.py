"""The project's error tree: one root, a few branches callers can catch."""

from __future__ import annotations


class BurnrateError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(BurnrateError):
    """Invalid configuration. `errors` holds one `$.path: message` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class RecordError(BurnrateError):
    """A record that cannot be turned into events. `reason` is a rejection reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SinkError(BurnrateError):
    """A delivery to a receiver failed; `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        self.retriable = retriable
        super().__init__(message)
