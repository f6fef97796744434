"""Errors that reach the user as one clear line, never as a traceback."""

from __future__ import annotations


class ServegateError(Exception):
    """An error whose message is meant for the user as it is."""


class BadTarget(ServegateError):
    """A --target (or related option) that is malformed or names nothing usable."""


class Unreachable(ServegateError):
    """A target that does not answer."""


class ServerStartError(ServegateError):
    """A reference server that could not be started or did not become ready in time."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        full = message
        if log_tail:
            full += "\n--- last lines of the server log ---\n" + log_tail
        super().__init__(full)


class EnvironmentSetupError(ServegateError):
    """A server virtualenv that could not be created."""
