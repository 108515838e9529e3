"""The pure parts of agentkube.testing.podnet: proxy request and response heads, endpoint choice."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.testing.podnet import ServiceRouter, _BadRequest, _close_response_head, _parse_proxy_request


def test_absolute_form_becomes_origin_form_with_the_urls_host_and_no_proxy_headers() -> None:
    request = _parse_proxy_request(
        b"POST http://user:pw@github-tools.team-a.svc.cluster.local:8080/mcp?x=1 HTTP/1.1\r\n"
        b"Host: somewhere-else\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic c2VjcmV0\r\n"
        b"Connection: keep-alive, X-Hop\r\n"
        b"X-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Content-Length: 2\r\n"
        b"Authorization: Bearer token\r\n"
        b"\r\n"
    )
    assert (request.method, request.host, request.port) == (
        "POST",
        "github-tools.team-a.svc.cluster.local",
        8080,
    )
    assert request.head == (
        b"POST /mcp?x=1 HTTP/1.1\r\n"
        b"Host: github-tools.team-a.svc.cluster.local:8080\r\n"
        b"Content-Length: 2\r\n"
        b"Authorization: Bearer token\r\n"
        b"Connection: close\r\n\r\n"
    )


def test_absolute_form_defaults_port_80_and_path_slash_and_reads_ipv6_hosts() -> None:
    plain = _parse_proxy_request(b"GET http://Example.COM. HTTP/1.0\r\n\r\n")
    assert (plain.host, plain.port) == ("example.com", 80)
    assert plain.head.startswith(b"GET / HTTP/1.0\r\nHost: Example.COM.\r\n")
    v6 = _parse_proxy_request(b"GET http://[::1]:9000/a HTTP/1.1\r\n\r\n")
    assert (v6.host, v6.port) == ("::1", 9000)


def test_connect_names_host_and_port_and_sends_no_head() -> None:
    request = _parse_proxy_request(
        b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n"
    )
    assert (request.method, request.host, request.port, request.head) == (
        "CONNECT",
        "api.example.com",
        443,
        b"",
    )
    assert _parse_proxy_request(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").host == "::1"


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"\r\n\r\n", "empty request"),
        (b"GET\r\n\r\n", "malformed request line"),
        (b"GET  http://a/ HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET http://a/ HTTP/2\r\n\r\n", "unsupported protocol version"),
        (b"get http://a/ HTTP/1.1\r\n\r\n", "malformed method"),
        (b"GET /path HTTP/1.1\r\nHost: a\r\n\r\n", "is not a proxy request"),
        (b"GET ftp://a/ HTTP/1.1\r\n\r\n", "only http:// URLs"),
        (b"CONNECT a HTTP/1.1\r\n\r\n", "CONNECT needs host:port"),
        (b"CONNECT a:0 HTTP/1.1\r\n\r\n", "bad port"),
        (b"CONNECT a:http HTTP/1.1\r\n\r\n", "bad port"),
        (b"CONNECT [::1 HTTP/1.1\r\n\r\n", "malformed host"),
        (b"CONNECT :80 HTTP/1.1\r\n\r\n", "malformed host"),
        (b"GET http://a/ HTTP/1.1\r\nBad Name: x\r\n\r\n", "malformed header line"),
        (b"GET http://a/ HTTP/1.1\r\n folded\r\n\r\n", "malformed header line"),
    ],
)
def test_malformed_requests_say_what_is_wrong(head: bytes, why: str) -> None:
    with pytest.raises(_BadRequest, match=why):
        _parse_proxy_request(head)


def test_final_response_head_closes_the_connection_and_interim_heads_pass() -> None:
    head, final = _close_response_head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\n\r\n"
    )
    assert final
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    assert _close_response_head(b"HTTP/1.1 100 Continue\r\n\r\n") == (b"HTTP/1.1 100 Continue\r\n\r\n", False)
    assert _close_response_head(b"not http at all\r\n\r\n") == (b"not http at all\r\n\r\n", True)


def _service(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": "tools"}, "spec": {"ports": ports}}


def _slice(
    name: str, endpoints: list[tuple[str, dict[str, bool]]], ports: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    meta = {"namespace": "team-a", "name": name, "labels": {"kubernetes.io/service-name": "tools"}}
    return {
        "metadata": {**meta, **extra.pop("metadata", {})},
        "addressType": extra.pop("addressType", "IPv4"),
        "ports": ports,
        "endpoints": [{"addresses": [ip], "conditions": c} for ip, c in endpoints],
    }


def test_endpoints_are_the_ready_addresses_with_the_slice_port_of_the_service_ports_name() -> None:
    router = ServiceRouter()
    router.update_service(_service([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]))
    ports = [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9091}]
    router.update_slice(
        _slice(
            "tools-1",
            [
                ("10.244.0.2", {"ready": True}),
                ("10.244.0.1", {}),  # unset ready counts as ready, as kube-proxy reads it
                ("10.244.0.3", {"ready": False}),
                ("10.244.0.4", {"ready": False, "serving": True, "terminating": True}),
            ],
            ports,
        )
    )
    router.update_slice(_slice("tools-2", [("10.244.0.5", {"ready": True})], ports))
    # Not this Service's: another namespace, another service label, FQDN addresses, UDP.
    router.update_slice(_slice("x", [("10.244.0.9", {})], ports, metadata={"namespace": "team-b"}))
    router.update_slice(
        _slice("y", [("10.244.0.9", {})], ports, metadata={"labels": {"kubernetes.io/service-name": "other"}})
    )
    router.update_slice(_slice("z", [("tools.example.com", {})], ports, addressType="FQDN"))
    router.update_slice(
        _slice("u", [("10.244.0.9", {})], [{"name": "http", "port": 8080, "protocol": "UDP"}])
    )

    assert router.endpoints("team-a", "tools", 80) == [
        ("10.244.0.1", 8080),
        ("10.244.0.2", 8080),
        ("10.244.0.5", 8080),
    ]
    assert router.endpoints("team-a", "tools", 9090) == [
        ("10.244.0.1", 9091),
        ("10.244.0.2", 9091),
        ("10.244.0.5", 9091),
    ]
    assert router.endpoints("team-a", "tools", 8080) == []  # a target port is no Service port
    assert router.endpoints("team-b", "tools", 80) == []

    router.delete_slice("team-a", "tools-2")
    assert [ip for ip, _ in router.endpoints("team-a", "tools", 80)] == ["10.244.0.1", "10.244.0.2"]


def test_with_no_ready_endpoint_the_serving_terminating_ones_are_used() -> None:
    router = ServiceRouter()
    router.update_service(_service([{"port": 80}]))  # one unnamed port: its slice port is unnamed too
    router.update_slice(
        _slice(
            "tools-1",
            [
                ("10.244.0.1", {"ready": False, "serving": True, "terminating": True}),
                ("10.244.0.2", {"ready": False, "serving": False, "terminating": True}),
                ("10.244.0.3", {"ready": False}),
            ],
            [{"port": 8080}],
        )
    )
    assert router.endpoints("team-a", "tools", 80) == [("10.244.0.1", 8080)]
    router.delete_service("team-a", "tools")
    assert router.endpoints("team-a", "tools", 80) == []


def test_local_addresses_are_empty_until_the_router_runs() -> None:
    router = ServiceRouter()
    router.update_service(_service([{"name": "http", "port": 80}]))
    assert router.local_addresses() == {}
    assert router.local_address("team-a", "tools", 80) is None
    with pytest.raises(RuntimeError, match="await start"):
        _ = router.proxy_address
