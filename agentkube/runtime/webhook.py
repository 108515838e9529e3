"""The webhook server: validating, mutating and conversion webhooks the API server calls over TLS.

    server = WebhookServer(cert_dir="/tmp/k8s-webhook-server/serving-certs")  # tls.crt, tls.key
    server.validating("/validate-widgets", validate_widget)
    server.mutating("/default-widgets", default_widget)
    server.conversion("/convert", convert_widget)
    manager.add_runnable(server.run, needs_leader=False, name="webhooks")  # every replica serves
    manager.add_ready_check("webhooks", server.ready_check)

    async def validate_widget(request: AdmissionRequest) -> Admission:
        if request.object and request.object["spec"].get("size", 0) > 10:
            return Admission.deny("spec.size: at most 10; lower it")
        return Admission.allow()

    async def default_widget(request: AdmissionRequest) -> Admission | dict:
        widget = copy.deepcopy(request.object)
        widget["spec"].setdefault("size", 1)
        return widget  # the server turns the difference into a JSON patch

    async def convert_widget(obj: dict, desired_api_version: str) -> dict:
        ...  # return the object as desired_api_version

What a caller may rely on:

- AdmissionReview ``admission.k8s.io/v1`` and ConversionReview ``apiextensions.k8s.io/v1`` (declare
  ``admissionReviewVersions: [v1]`` / ``conversionReviewVersions: [v1]``); the response echoes the
  request's ``uid``. Anything else on a webhook path is answered 400 with a message saying what was
  expected.
- A validating handler returns an ``Admission``: ``Admission.allow(warnings=...)`` or
  ``Admission.deny(message, code=403, reason=...)``. A mutating handler returns the mutated object
  (a changed copy of ``request.object``; the server sends the JSON patch from the original to it,
  none when equal) or an ``Admission`` (deny, or allow with an explicit ``patch``). A handler that
  raises denies the request with code 500 and the exception's type and message (its traceback is
  logged): an admission webhook must answer, and with ``failurePolicy: Fail`` a bug should stop
  writes rather than let unchecked objects in.
- A conversion handler gets each object and the ``desiredAPIVersion`` and returns the converted
  object; objects already at that version are passed through without calling it. If it raises for
  any object, or returns an object of another apiVersion, the whole review fails with
  ``result.status: Failure`` and a message naming the object (the API server then fails the
  request that needed it).
- TLS from a certificate and key file (PEM; the certificate file may hold the chain). The files are
  checked every ``poll_interval`` seconds (default 10) and reloaded when either changed (mtime, size
  or inode: a Secret volume's symlink swap counts), without a restart: connections made after the
  reload get the new certificate, and a connection opened before it is closed after its next answer
  (``Connection: close``), so a client that keeps connections alive (the API server does) moves to
  the new certificate on its next call but one. A pair that fails to load (a half-written
  rotation, a key that does not match) is logged and the old pair kept; it is tried again on the
  next poll. ``reload_certificates()`` checks at once. The server refuses to start without a
  loadable pair.
- ``/healthz`` on the same port answers 200 ``ok`` while the server runs with a certificate loaded
  (a kubelet probe with ``scheme: HTTPS``); ``ready_check`` is the same as a manager check.
- Metrics under controller-runtime's names: ``controller_runtime_webhook_requests_total{webhook,
  code}``, ``controller_runtime_webhook_latency_seconds{webhook}``,
  ``controller_runtime_webhook_requests_in_flight{webhook}`` (``webhook`` is the path).
- Request bodies are limited to ``max_body_bytes`` (default 32 MiB: a ConversionReview of a large
  list is big; etcd keeps objects under 1.5 MiB).

Limits: HTTP/1.1 only (the API server's client works with it); no client-certificate authentication
of the API server (give a ``client_ca_file`` and the server requires one signed by it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from agentkube.runtime import metrics
from agentkube.runtime.logging import get_logger

__all__ = [
    "Admission",
    "AdmissionRequest",
    "ConversionFunc",
    "MutatingFunc",
    "ValidatingFunc",
    "WebhookServer",
    "json_patch",
]

_log = get_logger("agentkube.runtime.webhook")

ADMISSION_V1 = "admission.k8s.io/v1"
CONVERSION_V1 = "apiextensions.k8s.io/v1"
DEFAULT_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # controller-runtime's default

WEBHOOK_REQUESTS = Counter(
    "controller_runtime_webhook_requests",
    "Total number of admission requests by HTTP status code.",
    ["webhook", "code"],
    registry=metrics.REGISTRY,
)  # exposed as controller_runtime_webhook_requests_total
WEBHOOK_LATENCY = Histogram(
    "controller_runtime_webhook_latency_seconds",
    "Histogram of the latency of processing admission requests",
    ["webhook"],
    registry=metrics.REGISTRY,
)
WEBHOOK_IN_FLIGHT = Gauge(
    "controller_runtime_webhook_requests_in_flight",
    "Current number of admission requests being served.",
    ["webhook"],
    registry=metrics.REGISTRY,
)


@dataclass(frozen=True)
class AdmissionRequest:
    """What the API server asks about: ``AdmissionReview.request`` with its fields named in Python.

    ``object`` is None for DELETE, ``old_object`` for CREATE and CONNECT. ``raw`` is the request
    exactly as sent, for fields not named here.
    """

    uid: str
    kind: dict[str, str]
    resource: dict[str, str]
    sub_resource: str | None
    name: str | None
    namespace: str | None
    operation: str
    user_info: dict[str, Any]
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool
    options: dict[str, Any] | None
    raw: dict[str, Any]

    @classmethod
    def from_review(cls, request: dict[str, Any]) -> AdmissionRequest:
        return cls(
            uid=str(request.get("uid") or ""),
            kind=dict(request.get("kind") or {}),
            resource=dict(request.get("resource") or {}),
            sub_resource=request.get("subResource") or None,
            name=request.get("name") or None,
            namespace=request.get("namespace") or None,
            operation=str(request.get("operation") or ""),
            user_info=dict(request.get("userInfo") or {}),
            object=request.get("object"),
            old_object=request.get("oldObject"),
            dry_run=bool(request.get("dryRun")),
            options=request.get("options"),
            raw=request,
        )

    def describe(self) -> str:
        kind = self.kind.get("kind", "?")
        where = f"{self.namespace}/{self.name}" if self.namespace else str(self.name)
        return f"{self.operation} {kind} {where}"


@dataclass(frozen=True)
class Admission:
    """The answer to an admission request; build it with ``allow``, ``deny`` or ``patched``."""

    allowed: bool
    message: str = ""
    code: int | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()
    patch: list[dict[str, Any]] | None = field(default=None)

    @classmethod
    def allow(cls, *, warnings: Sequence[str] = (), message: str = "") -> Admission:
        return cls(True, message, warnings=tuple(warnings))

    @classmethod
    def deny(
        cls, message: str, *, code: int = 403, reason: str = "Forbidden", warnings: Sequence[str] = ()
    ) -> Admission:
        """Refuse the request; ``message`` is what ``kubectl`` shows: name the field and the fix."""
        return cls(False, message, code, reason, tuple(warnings))

    @classmethod
    def patched(
        cls, original: dict[str, Any], mutated: dict[str, Any], *, warnings: Sequence[str] = ()
    ) -> Admission:
        """Allow, with the JSON patch that turns ``original`` into ``mutated`` (none when equal)."""
        ops = json_patch(original, mutated)
        return cls(True, warnings=tuple(warnings), patch=ops or None)

    def to_response(self, uid: str) -> dict[str, Any]:
        response: dict[str, Any] = {"uid": uid, "allowed": self.allowed}
        if not self.allowed or self.message or self.code is not None:
            status: dict[str, Any] = {"code": self.code or (200 if self.allowed else 403)}
            if self.message:
                status["message"] = self.message
            if self.reason:
                status["reason"] = self.reason
            response["status"] = status
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.allowed and self.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(orjson.dumps(self.patch)).decode()
        return response


ValidatingFunc = Callable[[AdmissionRequest], Awaitable[Admission]]
MutatingFunc = Callable[[AdmissionRequest], Awaitable["Admission | dict[str, Any]"]]
ConversionFunc = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


def _pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def json_patch(original: Any, mutated: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``original`` into ``mutated``: object members are compared one by
    one (add, remove, recurse); lists and scalars that differ are replaced whole."""
    if isinstance(original, dict) and isinstance(mutated, dict):
        ops: list[dict[str, Any]] = []
        for key in original:
            if key not in mutated:
                ops.append({"op": "remove", "path": f"{path}/{_pointer(key)}"})
        for key, value in mutated.items():
            where = f"{path}/{_pointer(key)}"
            if key not in original:
                ops.append({"op": "add", "path": where, "value": value})
            else:
                ops.extend(json_patch(original[key], value, where))
        return ops
    if original == mutated and type(original) is type(mutated):
        return []
    return [{"op": "replace", "path": path, "value": mutated}]


@dataclass
class _Route:
    kind: str  # "validating", "mutating", "conversion"
    handler: Any


def _signature(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class WebhookServer:
    """Serves admission and conversion webhooks over TLS; see the module docstring."""

    def __init__(
        self,
        *,
        cert_dir: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        host: str | None = None,
        port: int = 9443,
        poll_interval: float = 10.0,
        client_ca_file: str | os.PathLike[str] | None = None,
        max_body_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        """
        cert_dir: directory holding ``tls.crt`` and ``tls.key`` (what cert-manager's Secret mounts).
            Default ``/tmp/k8s-webhook-server/serving-certs`` (controller-runtime's).
        cert_file, key_file: explicit paths instead; both or neither.
        host: interface to listen on. Default None: all.
        port: TCP port; 0 picks a free one (read ``port`` after ``start``). Default 9443.
        poll_interval: seconds between checks of the certificate files. Default 10.
        client_ca_file: require API server client certificates signed by this CA. Default None.
        max_body_bytes: largest request body accepted. Default 32 MiB.
        """
        if (cert_file is None) != (key_file is None):
            raise ValueError("give both cert_file and key_file, or neither (then cert_dir is used)")
        directory = Path(cert_dir) if cert_dir is not None else DEFAULT_CERT_DIR
        self.cert_file = Path(cert_file) if cert_file is not None else directory / "tls.crt"
        self.key_file = Path(key_file) if key_file is not None else directory / "tls.key"
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.host = host
        self._port = port
        self.poll_interval = poll_interval
        self.client_ca_file = Path(client_ca_file) if client_ca_file is not None else None
        self.max_body_bytes = max_body_bytes
        self._routes: dict[str, _Route] = {}
        self._current: ssl.SSLContext | None = None
        self._loaded: tuple[tuple[int, int, int], ...] | None = None
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.reloads = 0

    # -- wiring -----------------------------------------------------------------------------------

    def validating(self, path: str, handler: ValidatingFunc) -> None:
        """Serve a validating admission webhook at ``path``."""
        self._add(path, "validating", handler)

    def mutating(self, path: str, handler: MutatingFunc) -> None:
        """Serve a mutating admission webhook at ``path``."""
        self._add(path, "mutating", handler)

    def conversion(self, path: str, handler: ConversionFunc) -> None:
        """Serve a CRD conversion webhook at ``path``."""
        self._add(path, "conversion", handler)

    def _add(self, path: str, kind: str, handler: Any) -> None:
        if not path.startswith("/") or path == "/healthz":
            raise ValueError(f"webhook path {path!r} must start with '/' and not be /healthz")
        if path in self._routes:
            raise ValueError(f"webhook path {path!r} is already registered ({self._routes[path].kind})")
        if self._runner is not None:
            raise RuntimeError("webhooks must be registered before the server starts")
        self._routes[path] = _Route(kind, handler)

    # -- certificates -----------------------------------------------------------------------------

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.client_ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.client_ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def reload_certificates(self) -> bool:
        """Load the pair again if either file changed since the last load; True if it was reloaded."""
        try:
            signature = _signature(self.cert_file, self.key_file)
        except OSError as exc:
            _log.warning(
                "cannot read the webhook certificate files; keeping the current ones", error=str(exc)
            )
            return False
        if signature == self._loaded:
            return False
        try:
            ctx = self._load()
        except (OSError, ssl.SSLError) as exc:
            _log.warning(
                "webhook certificate files changed but do not load; keeping the current pair",
                cert_file=str(self.cert_file),
                key_file=str(self.key_file),
                error=str(exc),
            )
            return False
        self._current, self._loaded = ctx, signature
        self.reloads += 1
        _log.info("webhook certificate loaded", cert_file=str(self.cert_file), reloads=self.reloads)
        return True

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        # Called for every handshake (with or without SNI): hand the connection the newest pair.
        current = self._current
        if current is not None and current is not ctx:
            sslobj.context = current

    def _server_context(self) -> ssl.SSLContext:
        # The listening context only starts handshakes; _select swaps in the current pair, so a
        # rotation never needs a new listener.
        ctx = self._load()
        ctx.sni_callback = self._select
        return ctx

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.reload_certificates()

    # -- serving ----------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._runner is not None and self._current is not None

    def ready_check(self) -> str | None:
        """A manager check: None while serving with a certificate, else why not."""
        if self._runner is None:
            return "webhook server not started"
        if self._current is None:
            return "no certificate loaded"
        return None

    async def start(self) -> None:
        """Load the certificate (raising if it does not load), listen, and start watching the files."""
        if self._runner is not None:
            raise RuntimeError("the webhook server is already running")
        if not self.reload_certificates() and self._current is None:
            raise FileNotFoundError(
                f"webhook server: no loadable certificate pair at {self.cert_file} and {self.key_file}; "
                "mount the serving certificate Secret there (tls.crt, tls.key) or pass cert_file/key_file"
            )
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_get("/healthz", self._healthz)
        for path in self._routes:
            app.router.add_post(path, self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self._port, ssl_context=self._server_context(), reuse_address=True
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses
        self.port = int(bound[0][1]) if bound else self._port
        self._watcher = asyncio.create_task(self._watch_files(), name="webhook-cert-watcher")
        _log.info("webhook server started", port=self.port, webhooks=sorted(self._routes))

    async def stop(self) -> None:
        """Stop listening (requests in flight are finished by aiohttp's shutdown) and watching."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def run(self) -> None:
        """``start``, serve until cancelled, ``stop``: a manager runnable (``needs_leader=False``)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        reason = self.ready_check()
        if reason is not None:
            return web.Response(status=503, text=reason + "\n")
        return web.Response(text="ok\n")

    async def _handle(self, request: web.Request) -> web.Response:
        route = self._routes[request.path]
        path = request.path
        started = time.perf_counter()
        in_flight = WEBHOOK_IN_FLIGHT.labels(webhook=path)
        in_flight.inc()
        status = 200
        try:
            try:
                review = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                status = 400
                return web.Response(status=400, text=f"request body is not JSON: {exc}\n")
            if not isinstance(review, dict):
                status = 400
                return web.Response(status=400, text="request body is not a JSON object\n")
            if route.kind == "conversion":
                answer, status = await self._convert(route.handler, review)
            else:
                answer, status = await self._admit(route, review)
            if isinstance(answer, str):
                response = web.Response(status=status, text=answer + "\n")
            else:
                response = web.Response(body=orjson.dumps(answer), content_type="application/json")
            if self._opened_before_reload(request):
                response.force_close()
            return response
        finally:
            in_flight.dec()
            WEBHOOK_REQUESTS.labels(webhook=path, code=str(status)).inc()
            WEBHOOK_LATENCY.labels(webhook=path).observe(time.perf_counter() - started)

    def _opened_before_reload(self, request: web.Request) -> bool:
        transport = request.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        return sslobj is not None and self._current is not None and sslobj.context is not self._current

    async def _admit(self, route: _Route, review: dict[str, Any]) -> tuple[dict[str, Any] | str, int]:
        if review.get("apiVersion") != ADMISSION_V1 or review.get("kind") != "AdmissionReview":
            return (
                f"expected an AdmissionReview of {ADMISSION_V1}, got {review.get('kind')!r} of "
                f"{review.get('apiVersion')!r}: set admissionReviewVersions to [v1]",
                400,
            )
        raw = review.get("request")
        if not isinstance(raw, dict) or not raw.get("uid"):
            return "AdmissionReview.request with a uid is required", 400
        request = AdmissionRequest.from_review(raw)
        try:
            outcome = await route.handler(request)
            if route.kind == "mutating" and isinstance(outcome, dict):
                outcome = Admission.patched(request.object or {}, outcome)
            if not isinstance(outcome, Admission):
                raise TypeError(
                    f"{route.kind} webhook handler returned {type(outcome).__name__}; expected an Admission"
                    + (" or the mutated object" if route.kind == "mutating" else "")
                )
        except Exception as err:
            _log.exception(f"{route.kind} webhook handler failed; denying", request=request.describe())
            outcome = Admission.deny(
                f"webhook handler failed: {type(err).__name__}: {err}", code=500, reason="InternalError"
            )
        answer = {
            "apiVersion": ADMISSION_V1,
            "kind": "AdmissionReview",
            "response": outcome.to_response(request.uid),
        }
        return answer, 200

    async def _convert(
        self, handler: ConversionFunc, review: dict[str, Any]
    ) -> tuple[dict[str, Any] | str, int]:
        if review.get("apiVersion") != CONVERSION_V1 or review.get("kind") != "ConversionReview":
            return (
                f"expected a ConversionReview of {CONVERSION_V1}, got {review.get('kind')!r} of "
                f"{review.get('apiVersion')!r}: set conversionReviewVersions to [v1]",
                400,
            )
        raw = review.get("request")
        if not isinstance(raw, dict) or not raw.get("uid") or not raw.get("desiredAPIVersion"):
            return "ConversionReview.request with uid and desiredAPIVersion is required", 400
        uid, desired = str(raw["uid"]), str(raw["desiredAPIVersion"])
        converted: list[dict[str, Any]] = []
        result: dict[str, Any] = {"status": "Success"}
        for obj in raw.get("objects") or []:
            what = _describe(obj)
            try:
                if obj.get("apiVersion") == desired:
                    out = obj
                else:
                    out = await handler(obj, desired)
                    if not isinstance(out, dict) or out.get("apiVersion") != desired:
                        got = out.get("apiVersion") if isinstance(out, dict) else type(out).__name__
                        raise ValueError(f"converted object has apiVersion {got!r}, expected {desired!r}")
            except Exception as err:
                _log.exception("conversion failed", object=what, desired_api_version=desired)
                result = {"status": "Failure", "message": f"converting {what} to {desired}: {err}"}
                converted = []
                break
            converted.append(out)
        response: dict[str, Any] = {"uid": uid, "result": result, "convertedObjects": converted}
        return {"apiVersion": CONVERSION_V1, "kind": "ConversionReview", "response": response}, 200


def _describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        return repr(obj)[:80]
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name")
    where = f"{ns}/{name}" if ns else str(name)
    return f"{obj.get('kind', '?')} {where} ({obj.get('apiVersion', '?')})"
