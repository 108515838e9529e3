"""Derived names of a ToolGateway's children and targets: DNS labels of at most 63 characters, unique,
stable, whatever the lengths of the names and namespaces they come from."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from agentkube.controllers.gatewayapi import ServerRef, multiplex_name, multiplex_targets, server_route_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
TOOL_NAME_MAX = 128  # the MCP spec's cap on a tool name; agentgateway shows <target>_<tool>

label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z").filter(lambda s: len(s) <= 63)
long_label = st.builds(lambda c, n: (c * 63)[:n], st.sampled_from("abcxyz"), st.integers(55, 63))
names = st.one_of(label, long_label)


def valid(name: str) -> bool:
    return bool(DNS_LABEL.match(name)) and len(name) <= 63


@given(gw=names, ns=names, server=names)
def test_every_object_name_is_a_dns_label_and_stable(gw: str, ns: str, server: str) -> None:
    for name in (server_route_name(gw, ns, server), multiplex_name(gw, ns), multiplex_name(gw, None)):
        assert valid(name), name
    assert server_route_name(gw, ns, server) == server_route_name(gw, ns, server)
    assert multiplex_name(gw, ns) == multiplex_name(gw, ns)


@given(a=st.tuples(names, names, names), b=st.tuples(names, names, names))
def test_names_of_different_objects_differ(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    made_a = {server_route_name(*a), multiplex_name(a[0], a[1]), multiplex_name(a[0], None)}
    assert len(made_a) == 3  # a server's route, its namespace's and the gateway's never collide
    if a != b:
        assert server_route_name(*a) != server_route_name(*b)
    if a[:2] != b[:2]:
        assert multiplex_name(a[0], a[1]) != multiplex_name(b[0], b[1])


def test_the_longest_names_fit() -> None:
    gw, ns, server = "g" * 63, "n" * 63, "s" * 63
    assert len(server_route_name(gw, ns, server)) <= 63
    assert len(multiplex_name(gw, ns)) <= 63
    assert server_route_name(gw, ns, server) != server_route_name(gw, ns, "s" * 62 + "t")


@given(servers=st.lists(st.tuples(names, names), min_size=1, max_size=8, unique=True), across=st.booleans())
def test_target_names_are_dns_labels_unique_within_a_backend(
    servers: list[tuple[str, str]], across: bool
) -> None:
    refs = [ServerRef(ns, name, 80, "/mcp") for ns, name in servers]
    if not across:
        refs = [ServerRef("one", r.name, 80, "/mcp") for r in refs]
        refs = list({r.name: r for r in refs}.values())
    targets, left_out = multiplex_targets(refs, across_namespaces=across)
    assert left_out == []
    made = [t.name for t in targets]
    assert all(valid(n) for n in made), made
    assert len(set(made)) == len(made)
    # agentgateway's <target>_<tool> stays within the MCP cap for tool names of up to 64 characters.
    assert all(len(n) + 1 + 64 <= TOOL_NAME_MAX for n in made)
    again, _ = multiplex_targets(list(reversed(refs)), across_namespaces=across)
    assert [t.name for t in again] == made
