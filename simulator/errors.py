"""User-facing errors: printed as one line by the CLI, exit code 2."""

from __future__ import annotations


class FedFleetError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class InputError(FedFleetError):
    """Bad input (scenario, profile, trace, file); ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)
