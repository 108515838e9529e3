"""Typed errors for everything the API server can answer, and the one test of "worth retrying".

What a caller may rely on:

- Every non-2xx answer from the API server becomes an ``ApiError`` subclass chosen by HTTP status and
  the ``Status.reason`` the server sent: catch ``NotFound`` to mean "the object is absent", never the
  bare ``ApiError``.
- ``.message`` is the server's own ``Status.message``; ``.causes`` its ``Status.details.causes``
  (each a dict with ``field``, ``message``, ``reason`` as the server gave them); ``.body`` the decoded
  Status (or ``None`` when the server did not send one, e.g. a proxy answered).
- ``str(error)`` lists every cause with its field, so a log line says which field was wrong.
- ``KindNotServed`` means discovery does not know the kind (a CRD not installed yet); it is *not* a
  ``NotFound``, so "object absent" handling never swallows "kind absent".
- A watch ``ERROR`` event is turned into the same types (``410``/``Expired`` -> ``Gone``).
- ``is_retryable`` is true for connection errors, timeouts, 429 and 5xx: the failures a retry can
  cure. It is false for 4xx answers, which a retry would only repeat.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KindNotServed",
    "NotFound",
    "RequestTimeout",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "WatchStalled",
    "is_retryable",
]


class ApiError(Exception):
    """An answer from the API server that was not a success.

    ``status`` is the HTTP status (or the ``code`` of a watch ERROR event), ``reason`` the Kubernetes
    ``StatusReason`` (``"NotFound"``, ``"AlreadyExists"``, ``"Invalid"``, ...; ``""`` when unknown).
    """

    status: int
    reason: str
    message: str
    causes: list[dict[str, Any]]
    body: dict[str, Any] | None

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        causes: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = list(causes or [])
        self.body = body
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"{self.status} {self.reason}".strip() if self.reason else str(self.status)
        text = f"{head}: {self.message}" if self.message else head
        # The apiserver's message usually repeats the causes already; list them anyway when a cause
        # names a field the message does not, so no field is lost from the log line.
        missing = [c for c in self.causes if _cause_text(c) not in self.message]
        if missing:
            text += " [" + "; ".join(_cause_text(c) for c in missing) + "]"
        return text

    def __str__(self) -> str:
        return self._describe()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.reason, self.message, self.causes, self.body))

    @classmethod
    def from_status(
        cls, body: dict[str, Any] | None, *, status: int | None = None, fallback_message: str = ""
    ) -> ApiError:
        """Build the matching subclass from a ``metav1.Status`` (or whatever the server sent).

        ``status`` is the HTTP status; when absent (a watch ERROR event) the Status' ``code`` is used.
        """
        status_body = body if isinstance(body, dict) and body.get("kind") == "Status" else None
        code = status if status is not None else 0
        if status_body is not None and not code:
            raw_code = status_body.get("code")
            code = int(raw_code) if isinstance(raw_code, int) else 0
        reason = str(status_body.get("reason") or "") if status_body else ""
        message = str(status_body.get("message") or "") if status_body else ""
        details = status_body.get("details") if status_body else None
        causes: list[dict[str, Any]] = []
        if isinstance(details, dict) and isinstance(details.get("causes"), list):
            causes = [c for c in details["causes"] if isinstance(c, dict)]
        if not message:
            message = fallback_message
        return _pick_class(code, reason)(code, reason, message, causes, body)


def _cause_text(cause: dict[str, Any]) -> str:
    field = cause.get("field")
    message = cause.get("message") or cause.get("reason") or ""
    return f"{field}: {message}" if field else str(message)


class BadRequest(ApiError):
    """400: the request itself was malformed (bad selector, bad patch)."""


class Unauthorized(ApiError):
    """401: the credentials were missing, wrong or expired."""


class Forbidden(ApiError):
    """403: authenticated, but RBAC does not allow this verb on this resource."""


class NotFound(ApiError):
    """404: the object (or namespace) does not exist."""


class Conflict(ApiError):
    """409: a write lost an optimistic-concurrency race, or server-side apply found field conflicts."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: create of a name that is taken."""


class Gone(ApiError):
    """410: the resourceVersion asked for is older than etcd keeps (compacted); relist."""


class Invalid(ApiError):
    """422: the object failed validation; ``causes`` names every field the server rejected."""

    def _describe(self) -> str:
        # Invalid is the error a user has to act on field by field, so always list every cause,
        # even those already folded into the server's message.
        head = f"{self.status} Invalid: {self.message}" if self.message else f"{self.status} Invalid"
        if self.causes:
            head += " [" + "; ".join(_cause_text(c) for c in self.causes) + "]"
        return head


class TooManyRequests(ApiError):
    """429: API priority and fairness (or a webhook) throttled the request; retry later."""


class ServerError(ApiError):
    """5xx: the server (or a webhook, or etcd behind it) failed; retrying may help."""


class KindNotServed(ApiError):
    """Discovery has no such group, version or kind (e.g. the CRD is not installed).

    Not a ``NotFound``: "no such kind" must never be mistaken for "no such object".
    """

    def __init__(self, api_version: str, kind: str, detail: str = "") -> None:
        self.api_version = api_version
        self.kind = kind
        message = f"the server does not serve kind {kind!r} in {api_version!r}"
        if detail:
            message += f" ({detail})"
        super().__init__(404, "NotFound", message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.api_version, self.kind))


class RequestTimeout(TimeoutError):
    """A request got no complete answer within its total timeout (say which and how long)."""


class WatchStalled(TimeoutError):
    """A watch stream delivered no bytes for longer than its inactivity timeout.

    A half-open TCP connection looks exactly like a quiet watch; bookmarks arrive about once a minute,
    so silence far longer than that means the connection is dead and the watch must be restarted.
    """


def _pick_class(code: int, reason: str) -> type[ApiError]:
    if code == 409:
        return AlreadyExists if reason == "AlreadyExists" else Conflict
    if code == 410 or reason in ("Expired", "Gone"):
        return Gone
    if code >= 500:
        return ServerError
    return {
        400: BadRequest,
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        422: Invalid,
        429: TooManyRequests,
    }.get(code, ApiError)


def is_retryable(exc: BaseException) -> bool:
    """True when trying the same request again could succeed."""
    if isinstance(exc, TooManyRequests | ServerError):
        return True
    if isinstance(exc, ApiError):
        return False
    # Timeouts (ours and aiohttp's), refused/reset connections, DNS failures, TLS handshakes cut off.
    return isinstance(exc, asyncio.TimeoutError | aiohttp.ClientError | ConnectionError | OSError)
