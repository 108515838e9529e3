"""The catalog: filters, prefixes, collisions, routing and when a list counts as changed."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.mcp.catalog import (
    KINDS,
    Catalog,
    Collision,
    Route,
    ToolSelector,
    compile_uri_template,
    glob_pattern,
)
from agentkube.dataplane.mcp.config import HttpUpstream, StdioUpstream, ToolFilter


def http(
    name: str, *, prefix: str | None = None, mode: Literal["allow", "deny"] | None = None, **lists: list[str]
) -> HttpUpstream:
    tools = None if mode is None else ToolFilter(mode=mode, **lists)
    return HttpUpstream(name=name, url=f"http://{name}.example:8080/mcp", tools=tools, tool_prefix=prefix)


def stdio(name: str, *, prefix: str | None = None) -> StdioUpstream:
    return StdioUpstream(name=name, command="server", tool_prefix=prefix)


def tool(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "inputSchema": {"type": "object"}, **fields}


def tools(*names: str) -> list[dict[str, Any]]:
    return [tool(n) for n in names]


def names(catalog: Catalog, kind: Literal["tools", "prompts"] = "tools") -> list[str]:
    return [item["name"] for item in catalog.list(kind)]


def exposed(tool_filter: ToolFilter | None, *candidates: str) -> list[str]:
    selector = ToolSelector(tool_filter)
    return [c for c in candidates if selector.allows(c)]


# --- filters -----------------------------------------------------------------------------------------


def test_without_a_filter_every_tool_is_listed_and_routable() -> None:
    catalog = Catalog([http("a")])
    assert catalog.update("a", "tools", tools("x", "y"))
    assert names(catalog) == ["x", "y"]
    assert catalog.route_tool("x") == Route("a", "x")


def test_allow_mode_exposes_only_allowed_tools_minus_denied_ones() -> None:
    f = ToolFilter(mode="allow", allow=["get_*", "search"], deny=["get_secret*"])
    assert exposed(f, "get_issue", "get_", "search", "search_all", "get_secret", "get_secrets", "put") == [
        "get_issue",
        "get_",
        "search",
    ]


def test_allow_mode_with_no_allow_entries_exposes_nothing() -> None:
    assert exposed(ToolFilter(mode="allow"), "x", "") == []
    assert exposed(ToolFilter(mode="allow", deny=["x"]), "x", "y") == []


def test_deny_mode_exposes_everything_but_denied_tools_and_ignores_allow_entries() -> None:
    f = ToolFilter(mode="deny", allow=["only_this"], deny=["delete_*", "drop"])
    assert exposed(f, "delete_repo", "delete_", "drop", "drop_table", "read", "only_this") == [
        "drop_table",
        "read",
        "only_this",
    ]
    assert exposed(ToolFilter(mode="deny"), "anything") == ["anything"]


def test_no_filter_exposes_every_name() -> None:
    assert exposed(None, "a", "", "*") == ["a", "", "*"]


@pytest.mark.parametrize(
    ("entry", "matches", "misses"),
    [
        ("exact", ["exact"], ["exact_", "_exact", "Exact", "exac"]),
        ("*", ["", "anything", "with\nnewline"], []),
        ("pre*", ["pre", "prefix"], ["pr", "xpre"]),
        ("*post", ["post", "xpost"], ["posts"]),
        ("a*b*c", ["abc", "a_b_c", "aXXbYYc", "abbc"], ["ab", "acb", "abcd"]),
        ("**", ["", "x"], []),
        ("what?", ["what?"], ["whatx", "what", "wha?"]),
        ("a[bc]", ["a[bc]"], ["ab", "ac", "a"]),
        ("[!x]", ["[!x]"], ["y"]),
        ("a.b", ["a.b"], ["axb"]),
        ("a+(b)|c^$\\", ["a+(b)|c^$\\"], ["aa(b)", "c"]),
        ("q?*", ["q?", "q?x"], ["qx", "q"]),
    ],
)
def test_globs_treat_only_star_as_special(entry: str, matches: list[str], misses: list[str]) -> None:
    pattern = glob_pattern([entry])
    assert pattern is not None
    assert [m for m in matches if pattern.fullmatch(m)] == matches
    assert [m for m in misses if pattern.fullmatch(m)] == []


def test_glob_pattern_of_several_entries_matches_any_and_of_none_is_none() -> None:
    pattern = glob_pattern(["a", "b*"])
    assert pattern is not None
    assert [n for n in ("a", "b", "bz", "ab", "c") if pattern.fullmatch(n)] == ["a", "b", "bz"]
    assert glob_pattern([]) is None


def test_a_filtered_tool_is_neither_listed_nor_routable() -> None:
    catalog = Catalog([http("a", mode="deny", deny=["delete_*"])])
    catalog.update("a", "tools", tools("delete_repo", "read"))
    assert names(catalog) == ["read"]
    assert catalog.route_tool("delete_repo") is None
    assert catalog.route_tool("read") == Route("a", "read")


def test_the_filter_applies_to_tools_only() -> None:
    catalog = Catalog([http("a", mode="allow", allow=["nothing"])])
    catalog.update("a", "prompts", [{"name": "p"}])
    catalog.update("a", "resources", [{"uri": "file:///x"}])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "file:///{name}"}])
    catalog.update("a", "tools", tools("p"))
    assert names(catalog) == []
    assert names(catalog, "prompts") == ["p"]
    assert catalog.route_prompt("p") == Route("a", "p")
    assert catalog.route_resource("file:///x") == "a"
    assert catalog.route_resource("file:///y") == "a"


# --- prefixes ----------------------------------------------------------------------------------------


def test_a_prefix_is_prepended_to_tools_and_prompts_and_stripped_again_when_routing() -> None:
    catalog = Catalog([http("github", prefix="gh_")])
    catalog.update("github", "tools", tools("create_issue"))
    catalog.update("github", "prompts", [{"name": "triage", "arguments": []}])
    assert names(catalog) == ["gh_create_issue"]
    assert names(catalog, "prompts") == ["gh_triage"]
    assert catalog.route_tool("gh_create_issue") == Route("github", "create_issue")
    assert catalog.route_prompt("gh_triage") == Route("github", "triage")
    assert catalog.route_tool("create_issue") is None
    assert catalog.route_prompt("triage") is None


def test_the_prefix_is_verbatim() -> None:
    catalog = Catalog([http("a", prefix="Team A/"), stdio("b", prefix="")])
    catalog.update("a", "tools", tools("x"))
    catalog.update("b", "tools", tools("x"))
    assert names(catalog) == ["Team A/x", "x"]
    assert catalog.route_tool("Team A/x") == Route("a", "x")
    assert catalog.route_tool("x") == Route("b", "x")


def test_filters_match_the_upstreams_own_name_before_the_prefix() -> None:
    catalog = Catalog(
        [
            http("a", prefix="gh_", mode="allow", allow=["create_*"]),
            http("b", prefix="gl_", mode="allow", allow=["gl_*"]),
        ]
    )
    catalog.update("a", "tools", tools("create_issue", "gh_create_x", "delete"))
    catalog.update("b", "tools", tools("create_issue", "gl_thing"))
    assert names(catalog) == ["gh_create_issue", "gl_gl_thing"]
    assert catalog.route_tool("gh_delete") is None
    assert catalog.route_tool("gl_create_issue") is None
    assert catalog.route_tool("gl_gl_thing") == Route("b", "gl_thing")


def test_resources_and_templates_are_never_renamed() -> None:
    catalog = Catalog([http("a", prefix="a_")])
    catalog.update("a", "resources", [{"uri": "file:///readme", "name": "readme"}])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "file:///{path}", "name": "file"}])
    assert catalog.list("resources") == [{"uri": "file:///readme", "name": "readme"}]
    assert catalog.list("resourceTemplates") == [{"uriTemplate": "file:///{path}", "name": "file"}]


def test_listed_items_are_shallow_copies_with_only_the_name_changed() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    original = {
        "name": "search",
        "title": "Search",
        "description": "Finds things",
        "inputSchema": schema,
        "outputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
        "icons": [{"src": "https://example/icon.png"}],
        "_meta": {"vendor/x": 1},
        "execution": {"taskSupport": "optional"},
    }
    catalog = Catalog([http("a", prefix="p_")])
    catalog.update("a", "tools", [original])
    [shown] = catalog.list("tools")
    assert shown == {**original, "name": "p_search"}
    assert shown["inputSchema"] is schema
    assert original["name"] == "search"


# --- collisions --------------------------------------------------------------------------------------


def test_a_name_two_upstreams_show_goes_to_the_first_in_config_order() -> None:
    catalog = Catalog([http("first"), stdio("second"), http("third")])
    # Listing order does not matter, config order does.
    catalog.update("third", "tools", tools("search", "only_third"))
    catalog.update("second", "tools", tools("search", "fetch"))
    catalog.update("first", "tools", tools("fetch"))
    assert names(catalog) == ["fetch", "only_third", "search"]
    assert catalog.route_tool("fetch") == Route("first", "fetch")
    assert catalog.route_tool("search") == Route("second", "search")
    assert catalog.collisions("tools") == [
        Collision("fetch", winner="first", hidden="second"),
        Collision("search", winner="second", hidden="third"),
    ]
    assert catalog.collisions("prompts") == []


def test_every_loser_of_a_name_is_reported() -> None:
    catalog = Catalog([http("a"), http("b"), http("c")])
    for upstream in ("c", "b", "a"):
        catalog.update(upstream, "prompts", [{"name": "p"}])
    assert catalog.collisions("prompts") == [Collision("p", "a", "b"), Collision("p", "a", "c")]
    assert catalog.route_prompt("p") == Route("a", "p")


def test_collisions_are_judged_on_final_names() -> None:
    catalog = Catalog([http("a"), http("b", prefix="x_")])
    catalog.update("a", "tools", tools("x_run", "run"))
    catalog.update("b", "tools", tools("run"))
    assert names(catalog) == ["run", "x_run"]
    assert catalog.route_tool("x_run") == Route("a", "x_run")
    assert catalog.collisions("tools") == [Collision("x_run", "a", "b")]


def test_a_filtered_tool_takes_no_part_in_collisions() -> None:
    catalog = Catalog([http("a", mode="deny", deny=["search"]), http("b")])
    catalog.update("a", "tools", tools("search"))
    catalog.update("b", "tools", tools("search"))
    assert catalog.route_tool("search") == Route("b", "search")
    assert catalog.collisions("tools") == []


def test_resource_uris_and_templates_collide_first_wins() -> None:
    catalog = Catalog([http("a"), http("b")])
    catalog.update("b", "resources", [{"uri": "file:///x", "name": "b"}])
    catalog.update("a", "resources", [{"uri": "file:///x", "name": "a"}])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "db://{t}", "name": "a"}])
    catalog.update("b", "resourceTemplates", [{"uriTemplate": "db://{t}", "name": "b"}])
    assert catalog.list("resources") == [{"uri": "file:///x", "name": "a"}]
    assert catalog.list("resourceTemplates") == [{"uriTemplate": "db://{t}", "name": "a"}]
    assert catalog.route_resource("file:///x") == "a"
    assert catalog.route_resource("db://users") == "a"
    assert catalog.collisions("resources") == [Collision("file:///x", "a", "b")]
    assert catalog.collisions("resourceTemplates") == [Collision("db://{t}", "a", "b")]


def test_a_repeated_name_within_one_upstream_keeps_its_first_item_and_is_no_collision() -> None:
    catalog = Catalog([http("a")])
    catalog.update("a", "tools", [tool("x", description="first"), tool("x", description="second")])
    assert catalog.list("tools") == [tool("x", description="first")]
    assert catalog.collisions("tools") == []


def test_a_repeated_name_whose_first_item_is_filtered_stays_hidden() -> None:
    # The filter judges names, so a second item of a denied name cannot sneak past it.
    catalog = Catalog([http("a", mode="deny", deny=["x"])])
    catalog.update("a", "tools", [tool("x"), tool("x", description="again")])
    assert catalog.route_tool("x") is None


def test_items_without_a_string_name_are_skipped() -> None:
    catalog = Catalog([http("a")])
    catalog.update("a", "tools", [{"description": "no name"}, {"name": 7}, {"name": None}, tool("ok")])
    catalog.update("a", "resources", [{"name": "no uri"}, {"uri": ["x"]}, {"uri": "file:///ok"}])
    catalog.update("a", "resourceTemplates", [{"uri": "not a template key"}])
    bad_item: Any = "not an object"
    catalog.update("a", "prompts", [bad_item, {"name": "p"}])
    assert names(catalog) == ["ok"]
    assert [r["uri"] for r in catalog.list("resources")] == ["file:///ok"]
    assert catalog.list("resourceTemplates") == []
    assert names(catalog, "prompts") == ["p"]


# --- update and remove -------------------------------------------------------------------------------


def test_update_says_whether_the_merged_list_changed() -> None:
    catalog = Catalog([http("a"), http("b")])
    assert catalog.update("a", "tools", tools("x", "y"))
    assert not catalog.update("a", "tools", tools("x", "y"))
    assert not catalog.update("a", "tools", tools("y", "x")), "order of the upstream's list is no change"
    assert catalog.update("a", "tools", [tool("x", description="now documented"), tool("y")])
    assert catalog.update("a", "tools", tools("x"))
    assert catalog.update("b", "tools", tools("z"))
    assert not catalog.update("b", "prompts", [])
    assert catalog.update("b", "prompts", [{"name": "p"}])


def test_a_change_to_a_filtered_tool_is_no_change() -> None:
    catalog = Catalog([http("a", mode="deny", deny=["secret_*"])])
    assert catalog.update("a", "tools", tools("read", "secret_a"))
    assert not catalog.update("a", "tools", [tool("read"), tool("secret_a", description="changed")])
    assert not catalog.update("a", "tools", tools("read", "secret_a", "secret_b"))
    assert not catalog.update("a", "tools", tools("read"))
    assert catalog.list("tools") == tools("read")


def test_a_change_to_a_hidden_collision_loser_is_no_change_until_it_wins() -> None:
    catalog = Catalog([http("a"), http("b")])
    catalog.update("a", "tools", tools("x"))
    assert catalog.update("b", "tools", tools("x", "y"))
    assert not catalog.update("b", "tools", [tool("x", description="hidden"), tool("y")])
    assert catalog.update("a", "tools", [])
    assert catalog.list("tools") == [tool("x", description="hidden"), tool("y")]
    assert catalog.route_tool("x") == Route("b", "x")
    assert catalog.collisions("tools") == []


def test_an_update_owns_its_own_copy_of_the_item_list() -> None:
    catalog = Catalog([http("a")])
    items = tools("x")
    catalog.update("a", "tools", items)
    items.append(tool("y"))
    assert not catalog.update("a", "tools", tools("x"))
    assert catalog.update("a", "tools", items)


def test_remove_drops_an_upstream_and_says_which_lists_changed() -> None:
    catalog = Catalog([http("a", mode="deny", deny=["h"]), http("b")])
    catalog.update("a", "tools", tools("x", "h"))
    catalog.update("a", "prompts", [{"name": "p"}])
    catalog.update("a", "resources", [{"uri": "file:///r"}])
    catalog.update("a", "resourceTemplates", [])
    catalog.update("b", "prompts", [{"name": "p", "description": "same name, b's"}])
    catalog.update("b", "resources", [{"uri": "file:///r"}])
    assert catalog.remove("a") == {"tools", "prompts"}
    assert catalog.list("tools") == []
    assert catalog.route_tool("x") is None
    assert catalog.route_prompt("p") == Route("b", "p")
    assert catalog.route_resource("file:///r") == "b"
    assert catalog.collisions("prompts") == []
    assert catalog.remove("a") == set()
    assert catalog.update("a", "tools", tools("x")), "an upstream that comes back is listed again"


def test_remove_of_an_upstream_whose_every_tool_is_hidden_changes_nothing() -> None:
    catalog = Catalog([http("a", mode="allow")])
    catalog.update("a", "tools", tools("x"))
    assert catalog.remove("a") == set()


def test_unknown_upstreams_and_duplicate_names_are_errors() -> None:
    catalog = Catalog([http("a")])
    with pytest.raises(ValueError, match="no upstream named 'zz'"):
        catalog.update("zz", "tools", [])
    with pytest.raises(ValueError, match="no upstream named 'zz'"):
        catalog.remove("zz")
    with pytest.raises(ValueError, match="upstream 'a' is given twice"):
        Catalog([http("a"), stdio("a")])


def test_upstreams_are_kept_in_config_order() -> None:
    assert Catalog([http("z"), stdio("a"), http("m")]).upstreams == ("z", "a", "m")


# --- listing -----------------------------------------------------------------------------------------


def test_lists_are_sorted_by_final_name_or_uri() -> None:
    catalog = Catalog([http("a", prefix="z_"), http("b")])
    catalog.update("a", "tools", tools("b", "a"))
    catalog.update("b", "tools", tools("Zed", "m", "_x", "z"))
    catalog.update("b", "resources", [{"uri": "b://2"}, {"uri": "a://9"}, {"uri": "b://10"}])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "z://{x}"}])
    catalog.update("b", "resourceTemplates", [{"uriTemplate": "a://{x}"}])
    assert names(catalog) == ["Zed", "_x", "m", "z", "z_a", "z_b"]
    assert [r["uri"] for r in catalog.list("resources")] == ["a://9", "b://10", "b://2"]
    assert [t["uriTemplate"] for t in catalog.list("resourceTemplates")] == ["a://{x}", "z://{x}"]


def test_a_kind_nothing_listed_is_an_empty_list() -> None:
    catalog = Catalog([http("a")])
    assert all(catalog.list(kind) == [] and catalog.collisions(kind) == [] for kind in KINDS)
    assert catalog.route_tool("x") is None
    assert catalog.route_prompt("x") is None
    assert catalog.route_resource("file:///x") is None


def test_a_returned_list_can_be_changed_without_touching_the_catalog() -> None:
    catalog = Catalog([http("a")])
    catalog.update("a", "tools", tools("x", "y"))
    first = catalog.list("tools")
    first.clear()
    catalog.collisions("tools").append(Collision("n", "a", "b"))
    assert names(catalog) == ["x", "y"]
    assert catalog.collisions("tools") == []


def test_listing_between_changes_serves_the_cached_items() -> None:
    catalog = Catalog([http("a")])
    catalog.update("a", "tools", tools("x", "y"))
    first, second = catalog.list("tools"), catalog.list("tools")
    assert all(a is b for a, b in zip(first, second, strict=True))
    catalog.update("a", "tools", tools("x", "y", "z"))
    assert catalog.list("tools")[0] is not first[0]


@settings(max_examples=50, deadline=None)
@given(st.permutations(["e", "b", "a", "d", "c"]), st.permutations(["v", "w", "b"]))
def test_the_merged_order_does_not_depend_on_listing_order(order_a: list[str], order_b: list[str]) -> None:
    catalog = Catalog([http("a"), http("b")])
    catalog.update("b", "tools", tools(*order_b))
    catalog.update("a", "tools", tools(*order_a))
    assert names(catalog) == ["a", "b", "c", "d", "e", "v", "w"]
    assert catalog.route_tool("b") == Route("a", "b")


tool_names = st.text(alphabet="ab_*?[", min_size=0, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, "", "a", "ab_"]),
            st.none() | st.tuples(st.sampled_from(["allow", "deny"]), st.lists(tool_names, max_size=3)),
            st.lists(tool_names, max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_what_is_listed_is_exactly_what_routes_and_the_filters_allow(
    specs: list[tuple[str | None, tuple[str, list[str]] | None, list[str]]],
) -> None:
    upstreams = []
    for i, (prefix, rule, _) in enumerate(specs):
        if rule is None:
            upstreams.append(http(f"u{i}", prefix=prefix))
        else:
            mode: Any = rule[0]
            upstreams.append(http(f"u{i}", prefix=prefix, mode=mode, **{rule[0]: rule[1]}))
    catalog = Catalog(upstreams)
    for i, (_, _, listed) in enumerate(specs):
        catalog.update(f"u{i}", "tools", tools(*listed))

    shown = names(catalog)
    assert shown == sorted(set(shown))
    for name in shown:
        route = catalog.route_tool(name)
        assert route is not None
        upstream = next(u for u in upstreams if u.name == route.upstream)
        assert (upstream.tool_prefix or "") + route.name == name
        assert ToolSelector(upstream.tools).allows(route.name)
        # The winner is the first upstream, in config order, that exposes this final name.
        first = next(
            u.name
            for u, (prefix, _, listed) in zip(upstreams, specs, strict=True)
            if any((prefix or "") + own == name and ToolSelector(u.tools).allows(own) for own in listed)
        )
        assert route.upstream == first
    for upstream, (prefix, _, listed) in zip(upstreams, specs, strict=True):
        for own in listed:
            if not ToolSelector(upstream.tools).allows(own):
                route = catalog.route_tool((prefix or "") + own)
                assert route is None or route.upstream != upstream.name


# --- resources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "matches", "misses"),
    [
        ("file:///readme", ["file:///readme"], ["file:///readme2", "file:///readm"]),
        (
            "repo://{owner}/{name}",
            ["repo://a/b", "repo://a-1/b.c?x"],
            ["repo://a/b/c", "repo://a/", "repo:///b"],
        ),
        ("file:///{+path}", ["file:///a", "file:///a/b/c.txt"], ["file:///", "file://x"]),
        ("s3://{bucket}/{+key}", ["s3://b/k", "s3://b/k/x/y"], ["s3://b", "s3:///k", "s3://b/"]),
        ("db://{t}.{c}", ["db://users.id", "db://a.b.c"], ["db://users", "db://a/b.c"]),
        ("x://{a_1}/{b.c}/{%41}", ["x://1/2/3"], ["x://1/2"]),
        ("weird+(chars)://{v}", ["weird+(chars)://v"], ["weirddd(chars)://v"]),
    ],
)
def test_uri_templates_match_simple_and_reserved_expansion(
    template: str, matches: list[str], misses: list[str]
) -> None:
    pattern = compile_uri_template(template)
    assert pattern is not None
    assert [m for m in matches if pattern.fullmatch(m)] == matches
    assert [m for m in misses if pattern.fullmatch(m)] == []


@pytest.mark.parametrize(
    "template",
    [
        "file:///{/path}",
        "search://{?q}",
        "search://x{&q}",
        "doc://{#frag}",
        "doc://{.ext}",
        "doc://{;p}",
        "map://{x,y}",
        "list://{items*}",
        "short://{name:3}",
        "empty://{}",
        "empty://{+}",
        "open://{name",
        "close://name}",
        "nested://{a{b}}",
        "bad://{a..b}",
        "bad://{.a}",
        "bad://{a b}",
    ],
)
def test_uri_templates_with_other_expressions_match_nothing(template: str) -> None:
    assert compile_uri_template(template) is None


def test_an_exact_uri_wins_over_any_template() -> None:
    catalog = Catalog([http("a"), http("b")])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "file:///{+path}"}])
    catalog.update("b", "resources", [{"uri": "file:///etc/motd"}])
    assert catalog.route_resource("file:///etc/motd") == "b"
    assert catalog.route_resource("file:///etc/hosts") == "a"


def test_the_first_upstream_with_a_matching_template_serves_the_uri() -> None:
    catalog = Catalog([http("a"), http("b"), http("c")])
    catalog.update("c", "resourceTemplates", [{"uriTemplate": "repo://{owner}/{name}"}])
    catalog.update("b", "resourceTemplates", [{"uriTemplate": "repo://{+path}"}, {"uriTemplate": "x://{v}"}])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "other://{v}"}])
    assert catalog.route_resource("repo://team/app") == "b"
    assert catalog.route_resource("x://1") == "b"
    assert catalog.route_resource("other://1") == "a"
    assert catalog.route_resource("nothing://1") is None
    catalog.remove("b")
    assert catalog.route_resource("repo://team/app") == "c"
    assert catalog.route_resource("repo://team/app/deeper") is None


def test_a_template_that_routes_nothing_is_still_listed() -> None:
    catalog = Catalog([http("a")])
    assert catalog.update("a", "resourceTemplates", [{"uriTemplate": "search://{?q}"}])
    assert catalog.list("resourceTemplates") == [{"uriTemplate": "search://{?q}"}]
    assert catalog.route_resource("search://?q=x") is None


def test_resource_routing_follows_updates() -> None:
    catalog = Catalog([http("a")])
    catalog.update("a", "resources", [{"uri": "mem://1"}])
    assert catalog.route_resource("mem://1") == "a"
    assert catalog.update("a", "resources", [{"uri": "mem://2"}])
    assert catalog.route_resource("mem://1") is None
    assert catalog.route_resource("mem://2") == "a"
