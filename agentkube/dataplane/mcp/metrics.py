"""The MCP proxy's Prometheus metrics, served on the metrics port (``agentkube_mcp_*``).

Label values come only from bounded sets: methods the proxy knows (others count as ``other``), tool
names the catalog lists (others as ``unknown``), upstream names from the config. A client can never
mint a new series, and no label carries a session id, an argument or a credential.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["KNOWN_METHODS", "ProxyMetrics", "method_label"]

KNOWN_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "subscriptions/listen",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
    }
)

# Tool calls run from milliseconds to minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def method_label(method: object) -> str:
    return method if isinstance(method, str) and method in KNOWN_METHODS else "other"


class ProxyMetrics:
    """Every series the proxy exports, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "agentkube_mcp_requests_total",
            "JSON-RPC requests answered, by method, protocol era and result (ok or the error code).",
            ["method", "era", "result"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "agentkube_mcp_request_duration_seconds",
            "Time to answer a request, by method.",
            ["method"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.tool_calls = Counter(
            "agentkube_mcp_tool_calls_total",
            "tools/call forwarded, by upstream, tool (the name clients see) and result "
            "(ok, tool_error for isError results, error).",
            ["upstream", "tool", "result"],
            registry=registry,
        )
        self.tool_call_seconds = Histogram(
            "agentkube_mcp_tool_call_duration_seconds",
            "Time a tools/call took upstream, by upstream.",
            ["upstream"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.upstream_up = Gauge(
            "agentkube_mcp_upstream_up",
            "1 when the upstream answers, else 0.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_items = Gauge(
            "agentkube_mcp_upstream_items",
            "Items an upstream contributes to the surface, by kind (after filter and collisions).",
            ["upstream", "kind"],
            registry=registry,
        )
        self.collisions = Gauge(
            "agentkube_mcp_name_collisions",
            "Names two upstreams both expose: 1 per hidden name, with the upstream that won it.",
            ["kind", "name", "winner", "hidden"],
            registry=registry,
        )
        self.sessions = Counter(
            "agentkube_mcp_sessions_started_total",
            "Sessions started by initialize (session-based clients).",
            ["version"],
            registry=registry,
        )
        self.session_rejections = Counter(
            "agentkube_mcp_session_rejections_total",
            "Requests refused for their session id, by reason.",
            ["reason"],
            registry=registry,
        )
        self.streams = Gauge(
            "agentkube_mcp_open_streams",
            "Notification streams held open (GET streams and subscriptions/listen).",
            ["kind"],
            registry=registry,
        )
