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
- ``.retry_after`` is how long the server asked us to wait (seconds, from the ``Retry-After`` header or
  ``Status.details.retryAfterSeconds``, the longer of the two), or ``None``. ``retry_after(exc)`` finds
  it through ``raise ... from`` chains and exception groups, so whoever schedules the retry (the
  controller's requeue, the reflector's backoff) can wait no less than that.
- ``is_rejection`` is true for answers that refuse a write for what it contains: a retry of the same
  body gets the same answer (422 Invalid, 400 BadRequest, 413, 415, and the 500s server-side apply
  answers for a body that does not fit the schema, such as "field not declared in schema").
"""

from __future__ import annotations

import asyncio
import math
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
    "ServerUnreachable",
    "TooManyRequests",
    "Unauthorized",
    "WatchStalled",
    "is_rejection",
    "is_retryable",
    "retry_after",
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
    retry_after: float | None

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        causes: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = list(causes or [])
        self.body = body
        self.retry_after = retry_after
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
        return (
            type(self),
            (self.status, self.reason, self.message, self.causes, self.body, self.retry_after),
        )

    @classmethod
    def from_status(
        cls,
        body: dict[str, Any] | None,
        *,
        status: int | None = None,
        fallback_message: str = "",
        retry_after_header: str | None = None,
    ) -> ApiError:
        """Build the matching subclass from a ``metav1.Status`` (or whatever the server sent).

        ``status`` is the HTTP status; when absent (a watch ERROR event) the Status' ``code`` is used.
        ``retry_after_header`` is the answer's ``Retry-After`` header, if any (only delay-seconds is
        understood; an HTTP date, which kube-apiserver never sends, is ignored).
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
        waits = [_seconds(retry_after_header)]
        if isinstance(details, dict):
            waits.append(_seconds(details.get("retryAfterSeconds")))
        known = [w for w in waits if w is not None]
        wait = max(known) if known else None
        return _pick_class(code, reason)(code, reason, message, causes, body, wait)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


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


class ServerUnreachable(ConnectionError):
    """No answer could be had from the API server: no connection (refused, TLS failed, a proxy that
    refused the tunnel), or one that closed before or inside the answer. Worth retrying."""


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


# What server-side apply answers (as 500 InternalError, a known kube-apiserver quirk) when the body
# does not fit the kind's schema: the same body is refused again however often it is sent.
_APPLY_SCHEMA_ERRORS = (
    "field not declared in schema",
    "failed to create typed patch object",
    "failed to create typed live object",
    "failed to convert new object",
    "cannot be handled as a",
)


def is_rejection(exc: BaseException) -> bool:
    """True when the server refused a write for what its body says: sending it again is pointless.

    422 Invalid, 400 BadRequest, 413 (too large), 415, and the 500s of server-side apply for a body
    that does not fit the schema. A 5xx without such a message (etcd down, a webhook failing) is not
    a rejection: it may pass next time.
    """
    if not isinstance(exc, ApiError) or isinstance(exc, KindNotServed):
        return False
    if isinstance(exc, Invalid | BadRequest) or exc.status in (413, 415):
        return True
    if exc.status == 500:
        text = exc.message.lower()
        return any(marker in text for marker in _APPLY_SCHEMA_ERRORS)
    return False


def retry_after(exc: BaseException) -> float | None:
    """The longest wait the server asked for anywhere in ``exc`` (its cause chain, its exception
    group members), or ``None`` when no part of it carries a ``Retry-After``."""
    found: list[float] = []
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ApiError) and err.retry_after is not None:
            found.append(err.retry_after)
        if isinstance(err, BaseExceptionGroup):
            stack.extend(err.exceptions)
        for linked in (err.__cause__, err.__context__):
            if linked is not None:
                stack.append(linked)
    return max(found) if found else None
