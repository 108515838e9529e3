"""Catalog: the one place that knows which name lives where, and what the filters let through.

The proxy lists tools, prompts, resources and resource templates from every upstream and shows its
clients one merged surface. The catalog holds what each upstream listed, applies the upstream's
tool filter and prefix, settles collisions, and answers two questions on the hot path: what is the
merged list of a kind (``list``), and which upstream serves a name or URI, under which of its own
names (``route_*``). It does no I/O: the proxy feeds it each upstream's lists as they arrive.

What a caller may rely on:

- Names. A tool or prompt is shown as ``toolPrefix + <the upstream's name>`` (the prefix verbatim;
  none when unset). Resources and resource templates are never renamed: URIs mean something.
- Filters (``tools`` of an upstream, tools only). ``allow``: only tools matching an allow entry, minus
  those matching a deny entry; ``deny``: every tool except those matching a deny entry (allow entries
  are then ignored); no filter: every tool. An entry is a name, or a glob in which ``*`` matches any
  run of characters (also none); every other character, ``?`` and ``[`` included, is literal. Entries
  match the upstream's own name, before the prefix. The filter is a security boundary: a filtered
  tool is neither listed nor routable, whatever name a client tries.
- Collisions. When two upstreams show the same final name (or URI, or URI template), the upstream
  earlier in the config wins and the other's item is hidden: not listed, not routable.
  ``collisions(kind)`` names each pair so the proxy can warn and count. Within one upstream a
  repeated name keeps its first item. Items without a string name (``uri``, ``uriTemplate``) are
  skipped: they could be neither shown nor called.
- ``list(kind)`` returns the merged items sorted by final name (``uri`` for resources,
  ``uriTemplate`` for templates): each a shallow copy of the upstream's item with only ``name``
  changed, so ``inputSchema``, ``outputSchema``, ``annotations``, ``title``, ``icons``, ``_meta``
  and anything newer pass through untouched. The items are shared between calls until the next
  change: treat them as read-only. Pagination is the front's business.
- ``update`` and ``remove`` say whether the merged list of a kind changed, so a client is told
  ``list_changed`` only when what it would see is different (a change to a filtered tool is no change).
- ``route_resource`` picks the upstream that listed the exact URI, else the first upstream (config
  order) with a resource template the URI matches. Templates are matched with a subset of RFC 6570:
  literal text, ``{var}`` (one or more characters other than ``/``) and ``{+var}`` (one or more of
  any). A template with any other expression (``{/var}``, ``{?q}``, ``{a,b}``, ``{var*}`` ...) is still
  listed but routes nothing.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from agentkube.dataplane.mcp.config import HttpUpstream, StdioUpstream, ToolFilter

__all__ = [
    "KINDS",
    "LIST_METHODS",
    "Catalog",
    "Collision",
    "Item",
    "Kind",
    "Route",
    "ToolSelector",
    "compile_uri_template",
    "glob_pattern",
]

Item = dict[str, Any]
"""One listed tool, prompt, resource or resource template, as the upstream sent it."""

Kind = Literal["tools", "prompts", "resources", "resourceTemplates"]
KINDS: Final[tuple[Kind, ...]] = ("tools", "prompts", "resources", "resourceTemplates")

LIST_METHODS: Final[Mapping[Kind, str]] = {
    "tools": "tools/list",
    "prompts": "prompts/list",
    "resources": "resources/list",
    "resourceTemplates": "resources/templates/list",
}
"""The method that lists each kind; its result carries the items under the kind's name."""

# The field that names an item of each kind: what collides, sorts and routes.
_KEY: Final[dict[Kind, str]] = {
    "tools": "name",
    "prompts": "name",
    "resources": "uri",
    "resourceTemplates": "uriTemplate",
}
_RENAMED: Final[frozenset[Kind]] = frozenset({"tools", "prompts"})

_EXPRESSION: Final = re.compile(r"\{([^{}]*)\}")
_VARNAME: Final = re.compile(r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: the upstream, and the name that upstream knows the tool or prompt by."""

    upstream: str
    name: str


@dataclass(frozen=True, slots=True)
class Collision:
    """``name`` is shown by ``winner`` (earlier in the config); ``hidden``'s item of that name is not."""

    name: str
    winner: str
    hidden: str


def glob_pattern(entries: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching a whole name against any of ``entries`` (``*`` = any run; all else literal);
    None when there are no entries."""
    if not entries:
        return None
    # fnmatch would treat ``?`` and ``[...]`` as wildcards; tool names may contain them literally.
    alternatives = (".*".join(re.escape(part) for part in entry.split("*")) for entry in entries)
    return re.compile("(?:" + "|".join(alternatives) + ")", re.DOTALL)


class ToolSelector:
    """An upstream's tool filter, compiled: ``allows(own_name)`` says whether a tool is exposed."""

    __slots__ = ("_allow", "_deny", "_mode")

    def __init__(self, tool_filter: ToolFilter | None) -> None:
        self._mode = None if tool_filter is None else tool_filter.mode
        self._allow = None if tool_filter is None else glob_pattern(tool_filter.allow)
        self._deny = None if tool_filter is None else glob_pattern(tool_filter.deny)

    def allows(self, name: str) -> bool:
        if self._deny is not None and self._deny.fullmatch(name):
            return False
        if self._mode == "allow":
            return self._allow is not None and self._allow.fullmatch(name) is not None
        return True


def compile_uri_template(template: str) -> re.Pattern[str] | None:
    """A regex matching the URIs ``template`` expands to, for ``{var}`` and ``{+var}`` only;
    None for a template using any other RFC 6570 expression, or with an unbalanced brace."""
    parts: list[str] = []
    at = 0
    for expression in _EXPRESSION.finditer(template):
        literal = template[at : expression.start()]
        if "{" in literal or "}" in literal:
            return None
        parts.append(re.escape(literal))
        body = expression.group(1)
        if body.startswith("+"):
            body, pattern = body[1:], ".+"
        else:
            pattern = "[^/]+"
        if not _VARNAME.fullmatch(body):
            return None
        parts.append(pattern)
        at = expression.end()
    rest = template[at:]
    if "{" in rest or "}" in rest:
        return None
    parts.append(re.escape(rest))
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Entry:
    upstream: str
    own: str
    item: Item
    """As listed to clients (final name)."""


@dataclass(slots=True)
class _Surface:
    """The merged view of one kind, rebuilt whole on each change."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    listing: list[Item] = field(default_factory=list)
    collisions: list[Collision] = field(default_factory=list)
    templates: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    """(upstream, pattern) in config order: how ``route_resource`` falls back (templates only)."""


@dataclass(slots=True)
class _Source:
    name: str
    prefix: str
    selector: ToolSelector
    items: dict[Kind, list[Item]] = field(default_factory=dict)


class Catalog:
    """What every upstream listed, merged, filtered, prefixed and routable.

    ``upstreams`` are the config's, in config order, which is also the priority order of collisions.
    Not thread-safe: one event loop owns it.
    """

    def __init__(self, upstreams: Sequence[HttpUpstream | StdioUpstream]) -> None:
        self._sources: dict[str, _Source] = {}
        for upstream in upstreams:
            if upstream.name in self._sources:
                raise ValueError(f"catalog: upstream {upstream.name!r} is given twice")
            self._sources[upstream.name] = _Source(
                name=upstream.name, prefix=upstream.tool_prefix or "", selector=ToolSelector(upstream.tools)
            )
        self._surfaces: dict[Kind, _Surface] = {kind: _Surface() for kind in KINDS}

    @property
    def upstreams(self) -> tuple[str, ...]:
        """Upstream names in priority (config) order."""
        return tuple(self._sources)

    def update(self, upstream: str, kind: Kind, items: list[Item]) -> bool:
        """Replace what ``upstream`` lists of ``kind``; True when the merged list of ``kind`` changed."""
        self._source(upstream).items[kind] = builtins.list(items)
        return self._rebuild(kind)

    def remove(self, upstream: str) -> set[Kind]:
        """Forget everything ``upstream`` listed (it went away); the kinds whose merged list changed."""
        source = self._source(upstream)
        had = [kind for kind in KINDS if source.items.get(kind)]
        source.items.clear()
        return {kind for kind in had if self._rebuild(kind)}

    def list(self, kind: Kind) -> list[Item]:
        """The merged items of ``kind``, sorted by final name (read-only items; a fresh list)."""
        return list(self._surfaces[kind].listing)

    # ``builtins.list``: below ``def list`` the bare name means the method to a type checker.
    def collisions(self, kind: Kind) -> builtins.list[Collision]:
        """Every final name of ``kind`` more than one upstream shows, with who won and who is hidden."""
        return list(self._surfaces[kind].collisions)

    def counts(self, kind: Kind) -> dict[str, int]:
        """How many items of ``kind`` each upstream contributes to the merged list (0 included)."""
        counts = dict.fromkeys(self._sources, 0)
        for entry in self._surfaces[kind].entries.values():
            counts[entry.upstream] += 1
        return counts

    def item(self, kind: Kind, name: str) -> Item | None:
        """The item of ``kind`` clients see as ``name`` (read-only), or None."""
        entry = self._surfaces[kind].entries.get(name)
        return None if entry is None else entry.item

    def route_tool(self, name: str) -> Route | None:
        """Where the tool a client calls ``name`` lives; None when no listed, exposed tool has that name."""
        return self._route("tools", name)

    def route_prompt(self, name: str) -> Route | None:
        return self._route("prompts", name)

    def route_resource(self, uri: str) -> str | None:
        """The upstream to read ``uri`` from: the one that listed it, else the first template match."""
        entry = self._surfaces["resources"].entries.get(uri)
        if entry is not None:
            return entry.upstream
        for upstream, pattern in self._surfaces["resourceTemplates"].templates:
            if pattern.fullmatch(uri):
                return upstream
        return None

    def _route(self, kind: Kind, name: str) -> Route | None:
        entry = self._surfaces[kind].entries.get(name)
        return None if entry is None else Route(entry.upstream, entry.own)

    def _source(self, upstream: str) -> _Source:
        try:
            return self._sources[upstream]
        except KeyError:
            raise ValueError(f"catalog: no upstream named {upstream!r}") from None

    def _rebuild(self, kind: Kind) -> bool:
        key = _KEY[kind]
        renamed = kind in _RENAMED
        surface = _Surface()
        for source in self._sources.values():
            seen: set[str] = set()
            for item in source.items.get(kind, ()):
                own = item.get(key) if isinstance(item, dict) else None
                if not isinstance(own, str) or own in seen:
                    continue
                seen.add(own)
                if kind == "tools" and not source.selector.allows(own):
                    continue
                final = source.prefix + own if renamed else own
                winner = surface.entries.get(final)
                if winner is not None:
                    surface.collisions.append(Collision(final, winner.upstream, source.name))
                    continue
                shown = dict(item)
                if renamed:
                    shown[key] = final
                surface.entries[final] = _Entry(source.name, own, shown)
                if kind == "resourceTemplates":
                    pattern = compile_uri_template(own)
                    if pattern is not None:
                        surface.templates.append((source.name, pattern))
                surface.listing.append(shown)
        surface.listing.sort(key=lambda shown: str(shown[key]))
        surface.collisions.sort(key=lambda c: c.name)
        changed = surface.listing != self._surfaces[kind].listing
        self._surfaces[kind] = surface
        return changed
