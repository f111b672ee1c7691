"""The one error tree of alertd.

Every error alertd raises on purpose is an :class:`AlertdError`. Each says whether trying the
same thing again may succeed (``retryable``) and carries the context a user needs to act on it.
Where a stdlib error means the same thing, the class subclasses it too (as aiosmtplib does), so
``except TimeoutError`` keeps working for callers that only know the stdlib.

::

    AlertdError
    ├── ConfigError                    invalid settings, rule files or templates   (exit 2)
    │                                  .problems: every Problem(file, line, col, message)
    ├── SourceError                    reading Stripe failed                        (exit 3)
    │   ├── StripeConnectionError      + ConnectionError; retryable
    │   ├── StripeTimeoutError         + TimeoutError; retryable
    │   ├── MalformedResponseError     HTML, truncated JSON, wrong types; retryable
    │   │   └── ResponseTooLargeError  a body over stripe.max_response_bytes; never read whole
    │   ├── IncompleteResponseError    has_more could not be resolved by splitting
    │   └── StripeAPIError             an HTTP error with Stripe's error body
    │       ├── InvalidRequestError    400: names the parameter
    │       ├── AuthenticationError    401: the API key is wrong or revoked
    │       ├── PermissionDeniedError  403: a restricted key lacks a permission
    │       ├── NotFoundError          404: analytics → the account is not in the preview
    │       ├── ConflictError          409: retryable
    │       ├── RateLimitError         429: retryable (honours Stripe-Should-Retry)
    │       └── StripeServerError      5xx: retryable
    ├── DeliveryError                  a notification could not be delivered
    │   ├── TransientDeliveryError     timeouts, 5xx, 429, SMTP 4xx: retried with backoff
    │   └── PermanentDeliveryError     other 4xx, SMTP 5xx, no address: reported, not retried
    └── StoreError                     the state file cannot be used                (exit 2)
        └── StoreDamagedError          + the file fails SQLite's integrity check; says how to
                                         recover (move it aside, ``sqlite3 FILE .recover``)

``UsageError`` (a ``ConfigError`` and a ``ValueError``) is a bad command-line value such as
``--at garbage``: exit 2 like any configuration problem, and still a ``ValueError`` for callers
that parse values for themselves.

``SourceError`` instances carry ``status``, ``code`` (Stripe's error code), ``param`` and
``request_id`` (the ``Request-Id`` response header), and ``str()`` of one is a message that
says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_SOURCE = 3


class AlertdError(Exception):
    """Base of every deliberate alertd error."""

    retryable: bool = False
    exit_code: int = EXIT_INTERNAL


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a user file (lines and columns from 1); ``str()`` is ``FILE:LINE:COL``.
    Locations travel typed, never as text to be parsed back."""

    file: str
    line: int
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a user file; ``str()`` is ``FILE:LINE:COL: message``."""

    file: str
    line: int
    col: int
    message: str

    @classmethod
    def at(cls, location: Location | None, message: str) -> Problem:
        """The problem ``message`` at ``location`` (``None``: a problem of no file)."""
        if location is None:
            return cls("", 0, 0, message)
        return cls(location.file, location.line, location.col, message)

    def __str__(self) -> str:
        if not self.file:  # a problem that belongs to no file (a command-line value)
            return f"alertd: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(AlertdError):
    """Settings, rules or templates are invalid. ``problems`` lists all of them at once."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", 0, 0, problems)]
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------- source


class SourceError(AlertdError):
    """Reading usage, customers or meters from Stripe failed."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable
        super().__init__(message)

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (
                ("status", self.status),
                ("code", self.code),
                ("param", self.param),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message


class StripeConnectionError(SourceError, ConnectionError):
    """The connection to Stripe failed before a response arrived."""

    retryable = True


class StripeTimeoutError(SourceError, TimeoutError):
    """Stripe did not answer within ``stripe.timeout``."""

    retryable = True


class MalformedResponseError(SourceError):
    """A 2xx response whose body is not the JSON alertd expects. Never read as zero usage."""

    retryable = True


class ResponseTooLargeError(MalformedResponseError):
    """A body longer than ``stripe.max_response_bytes``: reading stopped at the cap."""


class IncompleteResponseError(SourceError):
    """``has_more`` stayed true even for the smallest range alertd can ask for."""


class StripeAPIError(SourceError):
    """An HTTP error response with Stripe's ``{"error": {...}}`` body."""


class InvalidRequestError(StripeAPIError):
    """400: Stripe rejected a parameter (``param`` names it)."""


class AuthenticationError(StripeAPIError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(StripeAPIError, PermissionError):
    """403: a restricted key lacks a permission this call needs."""


class NotFoundError(StripeAPIError):
    """404: the object does not exist, or the account is not enrolled in the analytics preview."""


class ConflictError(StripeAPIError):
    """409: a conflicting concurrent request; safe to retry a GET."""

    retryable = True


class RateLimitError(StripeAPIError):
    """429: a rate budget was exceeded."""

    retryable = True


class StripeServerError(StripeAPIError):
    """5xx: Stripe failed; retry with backoff."""

    retryable = True


# --------------------------------------------------------------------------- delivery


class DeliveryError(AlertdError):
    """A notification could not be delivered to a receiver."""

    def __init__(self, message: str, *, receiver: str | None = None) -> None:
        self.receiver = receiver
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Worth trying again later: timeouts, 5xx, 429, SMTP 4xx replies, refused connections."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """Trying again will not help: other 4xx, SMTP 5xx, a customer with no email address."""


class StoreError(AlertdError):
    """The state store cannot be opened or used (unwritable, locked, foreign, newer, damaged).

    Exit 2: the user has to act on the file or the setting, as for a configuration problem.
    """

    exit_code = 2


class StoreDamagedError(StoreError):
    """The state file is corrupt (SQLite's ``quick_check`` or a query said so)."""


class UsageError(ConfigError, ValueError):
    """A command-line value is invalid (``--at garbage``); one line, exit 2."""
