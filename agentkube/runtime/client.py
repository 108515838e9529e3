"""An async Kubernetes client for any kind, on plain dicts.

kubernetes_asyncio supplies only what is hard to get right and easy to reuse: loading kubeconfig or
in-cluster configuration and credentials (bearer tokens refreshed from the service-account file or
an exec plugin, client certificates, the CA bundle, TLS server name, proxy). Every request is sent
on the project's lean HTTP/1.1 client (``agentkube.dataplane.http1``: keep-alive connections,
``httptools``, one timer for every deadline; 0.6-0.7x an aiohttp session's CPU per request
against a real API server, ``python -m bench.api_client``) and decoded with orjson into plain
dicts; no generated model classes, no ``Watch`` helper.

What a caller may rely on:

- Kinds are named by ``GVK``; ``resource(gvk)`` asks discovery (cached per group-version) how to reach
  them and raises ``KindNotServed`` if the server does not serve the kind. ``forget_discovery``
  drops the cache, e.g. after installing a CRD. A miss in a cached group-version is re-checked with
  the server at most every few seconds, so a CRD version added later is found without help too.
- Every request has a total timeout (``request_timeout``, default 30 s) and raises ``RequestTimeout``
  (a ``TimeoutError``) when it expires, so no call waits forever on a half-open connection. List
  pages are the exception: their answer must begin within ``request_timeout`` and their body may
  never go silent that long, but may take as long as it needs to arrive. A watch is bounded by its
  ``timeout_seconds`` plus a margin and by an inactivity timeout (``WatchStalled``); ``watch`` can
  also stream the initial state (WatchList, ``send_initial_events``).
- Non-2xx answers raise the typed errors of ``agentkube.runtime.errors`` carrying the server's
  Status message and causes, and ``retry_after`` when the server asked for a wait.
- Reads (GET: get, every list page, discovery) throttled by the server (429, or a 5xx carrying
  ``Retry-After``) are sent again after the wait asked for (at least 1 s), up to ``read_retries``
  times within ``read_retry_budget`` seconds of waiting; then the error is raised with its
  ``retry_after`` for the caller to honour. Writes are never retried here.
- ``list`` follows ``continue`` through every page and returns ``(items, resourceVersion)``, every item
  carrying ``apiVersion`` and ``kind``. If a continue token expires midway, the list starts over
  from the first page. A page's body has no total timeout, only an inactivity timeout.
- Metadata-only list and watch (``metadata_only=True``) ask for PartialObjectMetadata; the objects
  returned keep only ``apiVersion``, ``kind`` and ``metadata``, with ``apiVersion``/``kind`` set to the
  kind asked for (not ``meta.k8s.io/v1 PartialObjectMetadata``) so they key the same way as full ones.
- ``watch`` is an async generator: close it (``contextlib.aclosing``) when you stop early, so the
  connection is released at once rather than when the generator is collected.
- Writes send ``fieldManager`` (default ``agentkube``); ``apply`` is server-side apply, without
  ``force`` unless asked (a conflict with another manager raises ``Conflict``); every write takes
  ``dry_run=True`` to have the server validate without persisting. The object a write returns is
  noted as the running reconcile's own (``agentkube.runtime.echo``), so its watch event does not
  wake that reconcile's request again; outside a reconcile nothing is noted.
- Credentials from an exec plugin are refreshed before they expire and, after a 401, the plugin is
  run again and the request retried once.
- Each HTTP request counts once in ``rest_client_requests_total{code,method,host}`` (``code`` is
  ``"<error>"`` when no answer came).
- Connections are kept alive and reused; each open watch holds one of its own. At most
  ``Configuration.connection_pool_maxsize`` (100 by default) other requests are in flight at once;
  more wait for a turn. A connection failure raises ``ServerUnreachable`` (a ``ConnectionError``),
  a late answer ``RequestTimeout``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode

import orjson
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from agentkube.dataplane import http1
from agentkube.runtime import metrics
from agentkube.runtime.echo import note_written
from agentkube.runtime.errors import (
    ApiError,
    Gone,
    KindNotServed,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    TooManyRequests,
    WatchStalled,
)
from agentkube.runtime.gvk import GVK
from agentkube.runtime.kubeconfig import (
    ConfigException,
    Configuration,
    load_incluster_config,
    load_kube_config,
)
from agentkube.runtime.logging import get_logger

__all__ = ["ApiClientLike", "Client", "Connection", "PatchType", "Resource"]

log = get_logger(__name__)

PatchType = Literal["merge", "json", "strategic"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
# Server-side apply takes YAML; JSON is YAML, so the body is JSON sent under the YAML content type.
_APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# The trailing plain application/json lets servers that cannot produce PartialObjectMetadata (some
# aggregated APIs) answer with full objects, which are then cut down here.
_ACCEPT_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

# Seconds a watch may outlive its timeoutSeconds before we stop trusting the server to end it.
_WATCH_MARGIN = 30.0
# kube-apiserver's watch cache sends a bookmark about once a minute even when nothing changes, and
# one 2 s before timeoutSeconds ends the watch: a watch with bookmarks silent for longer than the
# smaller of the two (plus a margin for scheduling) sits on a dead connection.
_BOOKMARK_CADENCE = 60.0
_BOOKMARK_MARGIN = 5.0
# A list whose continue token keeps expiring is started over at most this often before Gone is raised.
_LIST_RESTARTS = 3
# A kind missing from a cached group-version is looked up again at most this often.
_DISCOVERY_MISS_RECHECK = 5.0
_USER_AGENT = "agentkube/0.1.0 (python; agentkube.runtime)"
# The least a throttled read waits before it is sent again, whatever the server said: APF answers
# "Retry-After: 1" at the least, and a proxy that says 0 must not get a hot loop.
_MIN_RETRY_WAIT = 1.0

Obj = dict[str, Any]
# Query parameters, in order; a name may repeat. (Named here because Client.list shadows `list`.)
Query = list[tuple[str, str]]


@dataclass(frozen=True)
class Resource:
    """What discovery says about one kind: where it lives and how it is scoped."""

    gvk: GVK
    plural: str
    namespaced: bool
    subresources: frozenset[str]
    verbs: frozenset[str] = frozenset()

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection, or of one object (``name``), or of its subresource.

        ``namespace`` is ignored for cluster-scoped kinds (objects of those carry none), and ``None``
        for a namespaced kind means the collection across all namespaces.
        """
        group, version = self.gvk.group, self.gvk.version
        parts = ["/apis", group, version] if group else ["/api", version]
        if self.namespaced and namespace:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(self.plural)
        if name is not None:
            if not name:
                raise ValueError(f"{self.gvk.kind}: empty name")
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        elif subresource:
            raise ValueError(f"{self.gvk.kind}: subresource {subresource!r} needs an object name")
        return "/".join(parts)


@dataclass
class _GroupVersion:
    fetched_at: float
    kinds: dict[str, Resource]


class ApiClientLike(Protocol):
    """What ``Client`` uses of a kubernetes_asyncio ``ApiClient``: its configuration (server,
    credentials, TLS, proxy, pool size) and ``close``. A real ``ApiClient`` is one; ``Connection`` is
    the same without the generated API behind it."""

    configuration: Configuration

    async def close(self) -> None: ...


class Connection:
    """A configuration, as ``Client.from_kubeconfig`` loads it, in place of an ``ApiClient`` and the
    generated models it would import (``agentkube.runtime.kubeconfig``)."""

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration

    async def close(self) -> None:
        """Nothing to close: the connections are the ``Client``'s."""


class Client:
    """An async client for any kind the API server serves; see the module docstring for guarantees.

    Construct it over a configured ``Connection`` or kubernetes_asyncio ``ApiClient`` (whose
    configuration it uses and which ``close()`` closes), or with ``await Client.from_kubeconfig()``.
    """

    def __init__(
        self,
        api_client: ApiClientLike,
        *,
        request_timeout: float = 30.0,
        field_manager: str = "agentkube",
        read_retries: int = 10,
        read_retry_budget: float = 60.0,
    ) -> None:
        """
        request_timeout: seconds each request may take in total (a watch: to its response headers).
            Default 30.
        field_manager: the ``fieldManager`` of writes. Default ``agentkube``.
        read_retries: times a throttled read (429, or 5xx with ``Retry-After``) is sent again before
            its error is raised. Default 10 (client-go's).
        read_retry_budget: seconds a read may spend waiting for those retries in all; a wait that
            would overrun it is not started, and the error is raised at once. Default 60.
        """
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout!r}")
        if not field_manager:
            raise ValueError("field_manager must not be empty")
        self._api_client = api_client
        configuration: Configuration = api_client.configuration
        self._configuration = configuration
        self._proxy: str | None = configuration.proxy or None
        self._proxy_headers: dict[str, str] = dict(configuration.proxy_headers or {})
        pool_size = int(configuration.connection_pool_maxsize or 100)
        # At most this many requests at once (watches aside), as kubernetes-asyncio's pool allowed.
        self._slots = asyncio.Semaphore(pool_size)
        self._http = http1.Pool(
            ssl_context=_ssl_context(configuration),
            server_hostname=configuration.tls_server_name or None,
            connect_seconds=request_timeout,
            max_idle=pool_size,
        )
        if read_retries < 0 or read_retry_budget < 0:
            raise ValueError("read_retries and read_retry_budget must not be negative")
        self.request_timeout = request_timeout
        self.field_manager = field_manager
        self.read_retries = read_retries
        self.read_retry_budget = read_retry_budget
        host = str(self._configuration.host).rstrip("/")
        self._base = host
        url = URL(host)
        self._host_label = f"{url.host}:{url.port}" if url.port is not None else str(url.host)
        if self._proxy is None:
            # The environment's proxy variables (and ~/.netrc), looked up once as aiohttp would: the
            # server's URL never changes.
            try:
                proxy, proxy_auth = get_env_proxy_for_url(url)
                self._proxy = str(proxy.with_user(None))
                if proxy_auth is not None:
                    self._proxy_headers.setdefault("Proxy-Authorization", proxy_auth.encode())
            except LookupError:
                pass
        if self._proxy is not None:
            proxy_url = URL(self._proxy)
            if proxy_url.scheme != "http":
                raise ValueError(
                    f"proxy {proxy_url.with_user(None)}: only http:// proxies are supported "
                    "(the API server's TLS runs inside the tunnel); set the proxy URL to http://host:port"
                )
            if proxy_url.user is not None:  # credentials in the proxy URL itself
                userinfo = f"{proxy_url.user}:{proxy_url.password or ''}".encode()
                self._proxy_headers.setdefault(
                    "Proxy-Authorization", "Basic " + base64.b64encode(userinfo).decode()
                )
                self._proxy = str(proxy_url.with_user(None))
        self._discovery: dict[str, _GroupVersion] = {}
        self._counters: dict[tuple[str, str], Any] = {}
        self._discovery_locks: dict[str, asyncio.Lock] = {}
        # Set by from_kubeconfig when credentials come from an exec plugin: re-runs it after a 401,
        # for plugins that give no expiry and whose token the server has stopped accepting.
        self._reauthenticate: Callable[[], Awaitable[None]] | None = None

    # ----------------------------------------------------------------------------------- lifecycle

    @classmethod
    async def from_kubeconfig(
        cls,
        path: str | None = None,
        *,
        context: str | None = None,
        request_timeout: float = 30.0,
        field_manager: str = "agentkube",
        read_retries: int = 10,
        read_retry_budget: float = 60.0,
    ) -> Client:
        """A client from a kubeconfig file, or from the in-cluster service account.

        With ``path`` None the order is controller-runtime's: ``$KUBECONFIG`` (a list of files,
        merged), else the in-cluster configuration when running in a pod (service-account token,
        re-read as the kubelet rotates it, and the cluster CA), else ``~/.kube/config``.
        ``context`` picks a kubeconfig context other than the current one; the other arguments are
        ``Client``'s.
        """
        configuration = Configuration()
        loader: Any = None
        kubeconfig = path or os.environ.get("KUBECONFIG") or None
        home_config = Path.home() / ".kube" / "config"
        in_cluster = kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if kubeconfig is None and not in_cluster and home_config.exists():
            kubeconfig = str(home_config)
        if kubeconfig is not None:
            loader = await load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        elif in_cluster:
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            raise ConfigException(
                "no Kubernetes configuration: pass a kubeconfig path, set $KUBECONFIG, "
                "create ~/.kube/config, or run in a pod"
            )
        client = cls(
            Connection(configuration),
            request_timeout=request_timeout,
            field_manager=field_manager,
            read_retries=read_retries,
            read_retry_budget=read_retry_budget,
        )
        if loader is not None and _uses_exec_plugin(loader):
            _install_exec_refresh(client, loader, configuration)
        return client

    async def close(self) -> None:
        """Close every connection (and with them every open watch)."""
        await self._http.close()
        await self._api_client.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def host(self) -> str:
        """The API server's base URL, e.g. ``https://127.0.0.1:6443``."""
        return self._base

    # ----------------------------------------------------------------------------------- discovery

    async def resource(self, gvk: GVK) -> Resource:
        """How to reach ``gvk``; raises ``KindNotServed`` when the server does not serve it."""
        gv = gvk.api_version
        cached = self._discovery.get(gv)
        if cached is not None:
            found = cached.kinds.get(gvk.kind)
            if found is not None:
                return found
            if time.monotonic() - cached.fetched_at < _DISCOVERY_MISS_RECHECK:
                raise KindNotServed(gv, gvk.kind)
        lock = self._discovery_locks.setdefault(gv, asyncio.Lock())
        async with lock:
            current = self._discovery.get(gv)
            # Another task may have refreshed it while we waited for the lock.
            if current is None or current is cached:
                current = await self._discover(gvk)
            found = current.kinds.get(gvk.kind)
        if found is None:
            raise KindNotServed(gv, gvk.kind)
        return found

    def forget_discovery(self, gvk: GVK | None = None) -> None:
        """Drop what discovery said about ``gvk``'s group-version, or about everything."""
        if gvk is None:
            self._discovery.clear()
        else:
            self._discovery.pop(gvk.api_version, None)

    async def _discover(self, gvk: GVK) -> _GroupVersion:
        gv = gvk.api_version
        path = f"/apis/{gv}" if gvk.group else f"/api/{gv}"
        try:
            body = await self._json("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                self._discovery.pop(gv, None)
                raise KindNotServed(gv, gvk.kind, "group-version not served") from exc
            raise
        kinds: dict[str, Resource] = {}
        subresources: dict[str, set[str]] = {}
        for entry in body.get("resources") or []:
            name = str(entry.get("name", ""))
            if "/" in name:
                parent, _, sub = name.partition("/")
                subresources.setdefault(parent, set()).add(sub)
        for entry in body.get("resources") or []:
            name = str(entry.get("name", ""))
            kind = entry.get("kind")
            if "/" in name or not kind:
                continue
            kinds[kind] = Resource(
                gvk=GVK(gvk.group, gvk.version, kind),
                plural=name,
                namespaced=bool(entry.get("namespaced")),
                subresources=frozenset(subresources.get(name, ())),
                verbs=frozenset(entry.get("verbs") or ()),
            )
        entry_gv = _GroupVersion(time.monotonic(), kinds)
        self._discovery[gv] = entry_gv
        return entry_gv

    # ----------------------------------------------------------------------------------- reads

    async def version(self) -> Obj:
        """The server's ``/version`` answer (``gitVersion``, ``major``, ``minor``, ...)."""
        return await self._json("GET", "/version")

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> Obj:
        """One object; ``NotFound`` if it does not exist."""
        res = await self.resource(gvk)
        obj = await self._json("GET", res.path(namespace, name))
        return _with_type(obj, gvk)

    async def list(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
        resource_version: str | None = None,
        metadata_only: bool = False,
    ) -> tuple[list[Obj], str]:
        """Every object (across all pages), and the list's resourceVersion to start a watch from.

        ``resource_version="0"`` lets the server answer from its watch cache (possibly stale, and the
        server then ignores ``limit``: one body of everything); ``None`` is a consistent read, which
        the server pages. ``limit`` is the page size (0: no paging).

        Pages have no total timeout, only ``request_timeout`` for the answer to start and as the
        longest silence while its body arrives, so a page of a big cluster is never cut off for being
        big. A continue token that expires midway (410) restarts the list from the first page (at
        most ``_LIST_RESTARTS`` times, then ``Gone`` is raised), rather than falling back to one
        unpaginated request that would bring back the very body paging avoids.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        res = await self.resource(gvk)
        path = res.path(namespace)
        accept = _ACCEPT_METADATA_LIST if metadata_only else "application/json"
        base: Query = []
        if label_selector:
            base.append(("labelSelector", label_selector))
        if field_selector:
            base.append(("fieldSelector", field_selector))
        restarts = 0
        while True:
            items: list[Obj] = []
            continue_token: str | None = None
            try:
                while True:
                    query = list(base)
                    if limit:
                        query.append(("limit", str(limit)))
                    if continue_token:
                        # The server rejects resourceVersion together with continue: the token pins it.
                        query.append(("continue", continue_token))
                    elif resource_version is not None:
                        query.append(("resourceVersion", resource_version))
                    page = await self._json("GET", path, query=query, accept=accept, streamed=True)
                    items.extend(_items_of(page, gvk, metadata_only))
                    continue_token = (page.get("metadata") or {}).get("continue") or None
                    if not continue_token:
                        return items, str((page.get("metadata") or {}).get("resourceVersion") or "")
            except Gone:
                if continue_token is None or restarts >= _LIST_RESTARTS:
                    raise
                restarts += 1
                # The continue token outlived etcd's compaction window: start over from a fresh
                # snapshot (what we have so far is of a version that no longer exists).
                log.info(
                    "list continue token expired; listing again from the first page",
                    kind=str(gvk),
                    restart=restarts,
                )

    async def watch(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        inactivity_timeout: float | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[Obj]:
        """Yield watch events ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": {...}}``.

        Ends normally when the server closes the stream (at ``timeout_seconds``); resume from the
        last ``metadata.resourceVersion`` seen (bookmarks included). An ERROR event raises the
        matching ``ApiError`` (``Gone`` for an expired resourceVersion: relist).

        ``WatchStalled`` is raised when no bytes arrive for ``inactivity_timeout`` seconds. By
        default, with bookmarks, that is the longest the server stays silent on a healthy watch plus
        a margin: kube-apiserver sends a bookmark about every minute and 2 s before
        ``timeoutSeconds`` ends the watch, so ``min(timeout_seconds, 60) + 5`` s (35 s for a 30 s
        watch: a dead connection is noticed well within 45 s). Without bookmarks the default is
        ``timeout_seconds`` + 30 s.

        ``send_initial_events=True`` is a streaming list (WatchList): the server first sends every
        object as ADDED, then a BOOKMARK annotated ``k8s.io/initial-events-end: "true"`` whose
        resourceVersion is that of the state just sent, then the changes after it. It asks for
        ``resourceVersionMatch=NotOlderThan``; ``resource_version=""`` means the current state
        (a consistent read). Servers without WatchList refuse it (400/422) or ignore it (then no
        such bookmark ever comes: tell by bookmarks that lack the annotation).
        """
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        if inactivity_timeout is None:
            inactivity_timeout = (
                min(float(timeout_seconds), _BOOKMARK_CADENCE) + _BOOKMARK_MARGIN
                if allow_bookmarks
                else timeout_seconds + _WATCH_MARGIN
            )
        if inactivity_timeout <= 0:
            raise ValueError(f"inactivity_timeout must be positive, got {inactivity_timeout}")
        res = await self.resource(gvk)
        path = res.path(namespace)
        query: Query = [("watch", "true")]
        if resource_version or not send_initial_events:
            query.append(("resourceVersion", resource_version))
        query.append(("timeoutSeconds", str(timeout_seconds)))
        if send_initial_events:
            query.append(("sendInitialEvents", "true"))
            query.append(("resourceVersionMatch", "NotOlderThan"))
        if allow_bookmarks or send_initial_events:
            query.append(("allowWatchBookmarks", "true"))
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        accept = _ACCEPT_METADATA if metadata_only else "application/json"
        # Response headers come at once from a healthy server; only the body may be long-lived.
        response = await self._send(
            "GET", path, query=query, accept=accept, answer_seconds=self.request_timeout
        )
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout_seconds + _WATCH_MARGIN
        try:
            if response.status >= 300:
                body = await _read_bounded(response, self.request_timeout)
                raise _error_from(response.status, body, response.headers.get("Retry-After"))
            pending = bytearray()
            while True:
                left = ends - loop.time()
                wait = min(inactivity_timeout, left)
                try:
                    if left <= 0:
                        raise http1.Timeout("past the watch's end")
                    response.idle_timeout(wait)
                    chunk = await response.readany()
                except http1.Timeout as exc:
                    if wait >= inactivity_timeout:
                        raise WatchStalled(
                            f"watch {path}: no data for {inactivity_timeout:g} s; "
                            "the connection is presumed dead"
                        ) from exc
                    raise RequestTimeout(
                        f"watch {path}: not closed by the server within "
                        f"timeoutSeconds={timeout_seconds} + {_WATCH_MARGIN:g} s"
                    ) from exc
                except http1.ClientError as exc:
                    raise ServerUnreachable(f"watch {path}: {exc}") from exc
                if not chunk:
                    break
                pending += chunk
                if b"\n" not in chunk:
                    continue
                *lines, rest = pending.split(b"\n")
                pending = bytearray(rest)
                for line in lines:
                    if line.strip():
                        yield _decode_event(line, gvk, metadata_only)
            if pending.strip():
                yield _decode_event(pending, gvk, metadata_only)
        finally:
            # Closing (not releasing) drops the connection: an unfinished watch body cannot be reused.
            response.close()

    # ----------------------------------------------------------------------------------- writes

    async def create(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Create ``obj`` (POST); ``AlreadyExists`` if the name is taken."""
        gvk, res, namespace, _ = await self._locate(obj, need_name=False)
        query = self._write_query(dry_run)
        created = await self._json("POST", res.path(namespace), body=orjson.dumps(obj), query=query)
        return _written(_with_type(created, gvk), dry_run)

    async def replace(self, obj: Obj, *, subresource: str | None = None, dry_run: bool = False) -> Obj:
        """Replace ``obj`` (PUT). With ``metadata.resourceVersion`` set this is a compare-and-swap:
        ``Conflict`` if the object changed since that version was read."""
        gvk, res, namespace, name = await self._locate(obj, need_name=True)
        query = self._write_query(dry_run)
        replaced = await self._json(
            "PUT", res.path(namespace, name, subresource), body=orjson.dumps(obj), query=query
        )
        return _written(_with_type(replaced, gvk), dry_run)

    async def patch(
        self,
        gvk: GVK,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Patch one object: JSON merge patch (a dict), JSON patch (a list of operations) or a
        strategic merge patch (built-in kinds only)."""
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"patch_type must be one of {sorted(_PATCH_CONTENT_TYPES)}, got {patch_type!r}")
        res = await self.resource(gvk)
        _require_namespace(res, namespace, name)
        patched = await self._json(
            "PATCH",
            res.path(namespace, name, subresource),
            body=orjson.dumps(patch),
            content_type=content_type,
            query=self._write_query(dry_run),
        )
        return _written(_with_type(patched, gvk), dry_run)

    async def delete(
        self,
        gvk: GVK,
        name: str,
        namespace: str | None = None,
        *,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
        uid: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> None:
        """Delete one object; ``NotFound`` if it is already gone. ``uid``/``resource_version`` are
        preconditions (``Conflict`` when the object is not that one / not at that version).
        ``grace_period_seconds`` overrides the object's own (0 removes a Pod at once: what a kubelet
        does once its containers have stopped)."""
        res = await self.resource(gvk)
        _require_namespace(res, namespace, name)
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        preconditions = {}
        if uid is not None:
            preconditions["uid"] = uid
        if resource_version is not None:
            preconditions["resourceVersion"] = resource_version
        if preconditions:
            options["preconditions"] = preconditions
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if dry_run:
            options["dryRun"] = ["All"]
        await self._json("DELETE", res.path(namespace, name), body=orjson.dumps(options))

    async def apply(
        self,
        obj: Obj,
        *,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply ``obj`` (or, with ``subresource="status"``, its status).

        ``obj`` is the whole intent of this field manager: fields it applied before and leaves out
        now are removed. Without ``force`` (the default) a field another manager set to a different
        value raises ``Conflict`` naming it; ``force=True`` takes ownership of such fields, which a
        controller passes for what it is the authority over (its children, its status).
        """
        gvk, res, namespace, name = await self._locate(obj, need_name=True)
        query = [("fieldManager", field_manager or self.field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        applied = await self._json(
            "PATCH",
            res.path(namespace, name, subresource),
            body=orjson.dumps(obj),
            content_type=_APPLY_CONTENT_TYPE,
            query=query,
        )
        return _written(_with_type(applied, gvk), dry_run)

    # ----------------------------------------------------------------------------------- plumbing

    def _write_query(self, dry_run: bool) -> Query:
        query = [("fieldManager", self.field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        return query

    async def _locate(self, obj: Obj, *, need_name: bool) -> tuple[GVK, Resource, str | None, str]:
        try:
            gvk = GVK.from_object(obj)
        except (KeyError, TypeError):
            raise ValueError("object needs apiVersion and kind") from None
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if need_name and not name:
            raise ValueError(f"{gvk.kind}: metadata.name is required")
        namespace = meta.get("namespace") or None
        res = await self.resource(gvk)
        _require_namespace(res, namespace, name or meta.get("generateName") or "?")
        return gvk, res, namespace, name

    async def _json(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        streamed: bool = False,
    ) -> Obj:
        """Send one request and return its decoded JSON body, or raise the matching error.

        With ``streamed`` (list pages) the body has no total timeout: ``request_timeout`` bounds the
        wait for the answer to begin and each silence while the body arrives.

        A read (GET) the server throttles (429, or a 5xx with ``Retry-After``) is sent again after the
        wait the server asked for, within ``read_retries`` and ``read_retry_budget``; writes are not,
        since whether a write that failed took effect is the caller's to judge.
        """
        waited = 0.0
        retries = 0
        while True:
            try:
                return await self._json_once(
                    method, path, query=query, body=body, content_type=content_type, accept=accept,
                    streamed=streamed,
                )  # fmt: skip
            except ApiError as exc:
                wait = self._read_retry_wait(method, exc, retries, waited)
                if wait is None:
                    raise
                retries += 1
                waited += wait
                log.info(
                    "API server asked us to wait; retrying the read",
                    path=path,
                    status=exc.status,
                    retry_in=round(wait, 3),
                    retry=retries,
                )
                await asyncio.sleep(wait)

    def _read_retry_wait(self, method: str, exc: ApiError, retries: int, waited: float) -> float | None:
        """How long to wait before sending a failed read again, or None: not a read, not a throttle,
        or out of budget. Never less than ``_MIN_RETRY_WAIT``, so a server that asks for no wait (or
        says nothing) cannot turn this into a hot loop."""
        if method != "GET" or retries >= self.read_retries:
            return None
        if isinstance(exc, TooManyRequests):
            wait = exc.retry_after if exc.retry_after is not None else _MIN_RETRY_WAIT
        elif isinstance(exc, ServerError) and exc.retry_after is not None:
            wait = exc.retry_after
        else:
            return None
        wait = max(wait, _MIN_RETRY_WAIT)
        if waited + wait > self.read_retry_budget:
            return None
        return wait

    async def _json_once(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        streamed: bool = False,
    ) -> Obj:
        async with self._slots:
            response = await self._send(
                method, path, query=query, body=body, content_type=content_type, accept=accept,
                answer_seconds=self.request_timeout,
            )  # fmt: skip
            if streamed:
                response.idle_timeout(self.request_timeout)  # no total: each silence is bounded
            try:
                data = await response.read()
            except http1.Timeout as exc:
                response.close()
                raise RequestTimeout(
                    f"{method} {path}: the body stopped arriving for {self.request_timeout:g} s"
                    if streamed
                    else f"{method} {path}: no answer within {self.request_timeout:g} s"
                ) from exc
            except http1.ClientError as exc:
                response.close()
                raise ServerUnreachable(f"{method} {path}: {exc}") from exc
            except BaseException:
                response.close()
                raise
        if response.status >= 300:
            raise _error_from(response.status, data, response.headers.get("Retry-After"))
        if not data:
            return {}
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict):
            raise ApiError(response.status, "", f"{method} {path}: expected a JSON object")
        return decoded

    def _count(self, code: str, method: str) -> None:
        counter = self._counters.get((code, method))
        if counter is None:  # labels() validates and locks: the few children are kept
            counter = self._counters[(code, method)] = metrics.REST_CLIENT_REQUESTS.labels(
                code=code, method=method, host=self._host_label
            )
        counter.inc()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        answer_seconds: float,
    ) -> http1.Response:
        """Send one request with credentials; its answer once the head has arrived (its body within
        ``answer_seconds`` of the send unless the caller changes that). Counts it; retries once after
        a 401 if the credentials come from an exec plugin that can mint new ones. Raises
        ``RequestTimeout`` when the head is late, ``ServerUnreachable`` when no answer could be had.
        The caller reads, releases or closes the response."""
        url = self._base + path
        if query:
            url += "?" + urlencode(query, quote_via=quote)
        for attempt in (1, 2):
            headers = {"Accept": accept, "User-Agent": _USER_AGENT}
            if body is not None:
                headers["Content-Type"] = content_type
            auth = await self._configuration.auth_settings()
            for setting in auth.values():
                if setting.get("in") == "header" and setting.get("value"):
                    headers[str(setting["key"])] = str(setting["value"])
            try:
                response = await self._http.request(
                    method,
                    url,
                    headers,
                    body or b"",
                    proxy=self._proxy,
                    proxy_headers=self._proxy_headers,
                    answer_seconds=answer_seconds,
                )
            except http1.Timeout as exc:
                self._count("<error>", method)
                raise RequestTimeout(f"{method} {path}: no answer within {answer_seconds:g} s") from exc
            except http1.ClientError as exc:
                self._count("<error>", method)
                raise ServerUnreachable(f"{method} {path}: {exc}") from exc
            except BaseException:
                self._count("<error>", method)
                raise
            self._count(str(response.status), method)
            if response.status == 401 and attempt == 1 and self._reauthenticate is not None:
                response.close()
                log.info("API server answered 401; refreshing exec-plugin credentials")
                await self._reauthenticate()
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _require_namespace(res: Resource, namespace: str | None, name: str) -> None:
    if res.namespaced and not namespace:
        raise ValueError(f"{res.gvk.kind} {name}: metadata.namespace is required for a namespaced kind")


def _written(obj: Obj, dry_run: bool) -> Obj:
    """What a write returned, noted (unless a dry run) as our own for the reconcile sending it."""
    if not dry_run:
        note_written(obj)
    return obj


def _with_type(obj: Obj, gvk: GVK) -> Obj:
    # Lists (and some subresource answers) omit apiVersion/kind; everything we hand out carries them.
    if "kind" not in obj or "apiVersion" not in obj:
        obj["apiVersion"] = gvk.api_version
        obj["kind"] = gvk.kind
    return obj


def _as_metadata(obj: Obj, gvk: GVK) -> Obj:
    return {"apiVersion": gvk.api_version, "kind": gvk.kind, "metadata": obj.get("metadata") or {}}


def _items_of(page: Obj, gvk: GVK, metadata_only: bool) -> list[Obj]:
    items: list[Obj] = page.get("items") or []
    if metadata_only:
        return [_as_metadata(item, gvk) for item in items]
    api_version, kind = gvk.api_version, gvk.kind
    for item in items:
        item["apiVersion"] = api_version
        item["kind"] = kind
    return items


def _decode_event(line: bytes | bytearray, gvk: GVK, metadata_only: bool) -> Obj:
    event = orjson.loads(line)
    if not isinstance(event, dict):
        raise ApiError(0, "", "watch stream sent something other than an event object")
    obj = event.get("object")
    if event.get("type") == "ERROR":
        raise ApiError.from_status(obj if isinstance(obj, dict) else None, fallback_message="watch error")
    if isinstance(obj, dict):
        event["object"] = _as_metadata(obj, gvk) if metadata_only else _with_type(obj, gvk)
    return event


def _error_from(status: int, data: bytes, retry_after_header: str | None = None) -> ApiError:
    body: Obj | None = None
    text = ""
    try:
        decoded = orjson.loads(data) if data else None
        body = decoded if isinstance(decoded, dict) else None
    except orjson.JSONDecodeError:
        text = data[:512].decode("utf-8", errors="replace").strip()
    return ApiError.from_status(
        body, status=status, fallback_message=text, retry_after_header=retry_after_header
    )


async def _read_bounded(response: http1.Response, seconds: float) -> bytes:
    """An error answer's body, or b"" when it does not come within ``seconds``."""
    response.idle_timeout(seconds)
    try:
        return await response.read(1 << 20)
    except http1.ClientError:
        return b""


def _ssl_context(configuration: Configuration) -> ssl.SSLContext:
    """The TLS context of the configuration's CA bundle, client certificate and verification
    settings, made as kubernetes-asyncio makes its own."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if getattr(configuration, "disable_strict_ssl_verification", False):
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def _uses_exec_plugin(loader: Any) -> bool:
    user = getattr(loader, "_user", None)
    try:
        return user is not None and "exec" in user
    except TypeError:
        return False


def _install_exec_refresh(client: Client, loader: Any, configuration: Configuration) -> None:
    """Keep exec-plugin tokens fresh: re-run the plugin before each request once its token is near
    expiry (kubernetes_asyncio caches it until then), and after a 401 whatever the expiry said."""
    lock = asyncio.Lock()

    async def refresh_if_expiring(cfg: Configuration) -> None:
        if not hasattr(loader, "exec_plugin_expiry"):
            return  # no expiry given: the token stands until the server rejects it
        async with lock:
            await loader.load_from_exec_plugin()  # no-op while the cached token is fresh
            if getattr(loader, "token", None):
                cfg.api_key["BearerToken"] = loader.token

    async def reauthenticate() -> None:
        async with lock:
            if hasattr(loader, "exec_plugin_expiry"):
                del loader.exec_plugin_expiry
            await loader.load_from_exec_plugin()
            if getattr(loader, "token", None):
                configuration.api_key["BearerToken"] = loader.token

    configuration.refresh_api_key_hook = refresh_if_expiring
    client._reauthenticate = reauthenticate
