"""A paginated list whose continue token expires midway, on a real kube-apiserver.

kube-apiserver 1.34 serves continue tokens from its watch cache, where they do not expire; with the
watch cache off (a control plane of this module's own) a page is read from etcd, and compacting etcd
between two pages makes the next one answer 410 Expired, as on a big cluster whose list outlives
etcd's compaction window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from agentkube.runtime.client import Client
from agentkube.testing import ControlPlane
from test.integration.runtime_helpers import CM, configmap
from test.integration.test_cache import compact_etcd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd_backed() -> Iterator[ControlPlane]:
    with ControlPlane(apiserver_flags=["--watch-cache=false"]) as plane:
        plane.create_namespace("paged")
        yield plane


class CompactingClient(Client):
    """A real client that, once, writes an object and compacts etcd right after the first page."""

    plane: ControlPlane
    pages: list[str]
    compacted = False

    async def _json(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), **kw: Any) -> Any:
        if method == "GET":
            asked = dict(query)
            page = "continue" if asked.get("continue") else "first"
            self.pages.append(page if asked.get("limit") else f"{page} without limit")
        answer = await super()._json(method, path, query=query, **kw)
        if method == "GET" and "continue" in (answer.get("metadata") or {}) and not self.compacted:
            self.compacted = True
            await self.create(configmap("written-meanwhile", "paged"))
            compact_etcd(self.plane)
        return answer


@pytest_asyncio.fixture(loop_scope="session")
async def paging_client(etcd_backed: ControlPlane) -> AsyncIterator[CompactingClient]:
    plain = await Client.from_kubeconfig(str(etcd_backed.kubeconfig))
    client = CompactingClient(plain._api_client)
    client.plane, client.pages = etcd_backed, []
    try:
        yield client
    finally:
        await client.close()


async def test_an_expired_continue_token_starts_the_list_over_and_the_result_is_consistent(
    paging_client: CompactingClient,
) -> None:
    names = {f"cm-{i:02d}" for i in range(25)}
    for name in sorted(names):
        await paging_client.create(configmap(name, "paged"))
    await paging_client.resource(CM)
    paging_client.pages.clear()
    items, rv = await paging_client.list(CM, "paged", limit=10)
    listed = {i["metadata"]["name"] for i in items}
    # A fresh snapshot: everything, including what was written while the first attempt ran, once.
    assert listed >= names | {"written-meanwhile"}
    assert len(items) == len(listed)
    assert rv
    # First page, the continue answered 410, then the list again from its first page, in pages:
    # never one request for everything (the body paging is there to avoid).
    assert paging_client.pages[:3] == ["first", "continue", "first"], paging_client.pages
    assert paging_client.pages.count("first") == 2
    assert all(not p.endswith("without limit") for p in paging_client.pages), paging_client.pages
