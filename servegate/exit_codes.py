"""The exit codes of a servegate conformance run, in one place.

0-5 are pytest's own; servegate adds codes above them for a run that could not test its target,
so CI can tell "the server failed the checks" from "the checks never reached the server".
"""

from __future__ import annotations

from servegate.errors import (
    BadTarget,
    EnvironmentSetupError,
    ServegateError,
    ServerStartError,
    Unreachable,
)

#: every check passed (and, with --profile, every requested profile succeeded)
OK = 0
#: a check failed, or (with --profile) a requested profile did not succeed
CHECKS_FAILED = 1
#: interrupted (Ctrl-C, SIGTERM)
INTERRUPTED = 2
#: an error inside pytest or servegate itself
INTERNAL_ERROR = 3
#: bad options (a malformed --target, an unknown feature or profile, a missing file)
USAGE_ERROR = 4
#: no check was collected
NO_CHECKS = 5
#: nothing answers at the target's address (HTTP or gRPC)
TARGET_UNREACHABLE = 6
#: the target answers but cannot be tested as asked: it serves no model named with --model, or
#: speaks none of V2, V1 and OpenAI at the URL
TARGET_UNUSABLE = 7
#: a reference server could not be set up, started or made ready
SERVER_START_FAILED = 8


def exit_code_for(exc: ServegateError, *, starting_server: bool = False) -> int:
    """The exit code for an error that stopped the run before its checks; ``starting_server``
    when it came from setting up a reference server (a port in use, no container engine)."""
    if isinstance(exc, Unreachable):
        return TARGET_UNREACHABLE
    if isinstance(exc, (ServerStartError, EnvironmentSetupError)):
        return SERVER_START_FAILED
    if isinstance(exc, BadTarget) or not starting_server:
        return TARGET_UNUSABLE
    return SERVER_START_FAILED
