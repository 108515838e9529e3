"""How the lean client reads a URL: the same origin and request target as ``urlsplit`` gives (what
it did before the origin was parsed once per authority), for any http(s) URL."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkube.dataplane.http1 import _split


def by_urlsplit(url: str) -> tuple[tuple[str, str, int, str, str], str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(url)
    port = parts.port or {"http": 80, "https": 443}[scheme]
    shown = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host_header = shown if port == {"http": 80, "https": 443}[scheme] else f"{shown}:{port}"
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return (scheme, parts.hostname, port, host_header, f"{shown}:{port}"), target


def outcome(read: Callable[[str], object], url: str) -> object:
    try:
        return read(url)
    except ValueError:
        return ValueError


def split(url: str) -> tuple[tuple[str, str, int, str, str], str]:
    origin, target = _split(url)
    return (origin.scheme, origin.host, origin.port, origin.host_header, origin.authority), target


hosts = st.sampled_from(["example.com", "Example.COM", "127.0.0.1", "[::1]", "[fe80::1]", "api.x-y.io"])
ports = st.sampled_from(["", ":80", ":443", ":6443", ":8080"])
text = st.text(alphabet="abc/%20?=&#;,:@+.-_~\t\r\n ", max_size=24)


@given(
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["", "user:secret@"]),
    hosts,
    ports,
    text,
    st.sampled_from(["", " ", "\t", "\x00 "]),
)
def test_origin_and_target_are_urlsplits(
    scheme: str, userinfo: str, host: str, port: str, rest: str, lead: str
) -> None:
    url = f"{lead}{scheme}://{userinfo}{host}{port}{rest}"
    assert outcome(split, url) == outcome(by_urlsplit, url)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://h", "/"),
        ("https://h?watch=true", "/?watch=true"),
        ("https://h/a?", "/a"),
        ("https://h/a??b", "/a??b"),
        ("https://h/a#frag?x", "/a"),
        ("https://h/api/v1/namespaces/ns/configmaps/c?fieldManager=a&force=true", None),
        ("https://h/a\r\nX-Injected: 1", "/aX-Injected: 1"),
    ],
)
def test_targets(url: str, target: str | None) -> None:
    assert split(url)[1] == (target if target is not None else url[len("https://h") :])
    assert split(url) == by_urlsplit(url)


@pytest.mark.parametrize("url", ["ftp://h/x", "https:///x", "h/x", "https://h:99999/x"])
def test_what_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        _split(url)
