"""The error tree. Foreign errors are translated once, at the edge that meets them (``raise ... from exc``).

    VerifierError                 anything the tool reports to a user as one line
    ├── UsageError                bad options or arguments                         exit 2
    ├── InputError                an input file that cannot be used                exit 2
    │   └── CaptureFormatError    not a capture, truncated, absurd record length   exit 2
    ├── AwsError                  AWS refused or failed (credentials, permissions, not found, quota,
    │                             a resource in the wrong state); names the IAM action when relevant  exit 3
    └── ParseError                core parsers: bytes that cannot be what they claim to be.
                                  Raised only by pure parsers; the engine turns it into data
                                  (a counted malformed packet, a flow reason), never into an exit.

Parsers in the core share one contract: they return ``None`` when they need more bytes, return a
result when they have one, and raise ``ParseError`` for input that is malformed.
"""

from __future__ import annotations


class VerifierError(Exception):
    """Base of every error the tool shows to a user as one clear line."""

    exit_code = 2


class UsageError(VerifierError):
    """The command line asks for something that cannot be done."""


class InputError(VerifierError):
    """An input file cannot be used."""


class CaptureFormatError(InputError):
    """A capture file is not a capture, is truncated, or holds an impossible record."""

    def __init__(self, path: str, message: str, offset: int | None = None) -> None:
        self.path = path
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}: {message}{where}")


class AwsError(VerifierError):
    """An AWS call failed in a way the user must act on; translated once, in the AWS adapter. ``code`` is
    AWS's error code when AWS answered (``ThrottlingException``, ``InvalidInstanceID.NotFound``...), else
    empty: callers that tell errors apart read it, not the message."""

    exit_code = 3

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ParseError(VerifierError):
    """Malformed bytes given to a core parser (never shown to users as a failure of the run)."""
