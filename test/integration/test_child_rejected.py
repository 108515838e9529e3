"""Children the API server refuses for what they are become ``ChildRejected``, with the server's words.

kube-apiserver answers a server-side apply whose body does not fit the schema (an undeclared field, a
string where a number belongs) with HTTP 500 "failed to create typed patch object ...". That is not
an outage: the same body is refused every time, so it must surface as a problem of the child
instead of a retry loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from agentkube.controllers.children import ChildRejected, Children
from agentkube.controllers.status import CHILD_ERRORS, child_problem
from agentkube.runtime.cache import Cache
from agentkube.runtime.client import Client
from agentkube.runtime.errors import is_rejection
from test.integration.runtime_helpers import CM, DEADLINE, configmap


@pytest_asyncio.fixture(loop_scope="session")
async def children(client: Client, namespace: str) -> AsyncIterator[Children]:
    cache = Cache(client, default_namespace=namespace)
    kids = Children(cache, client, None, {CM: True})
    await cache.start()
    try:
        assert await cache.wait_for_sync(DEADLINE)
        yield kids
    finally:
        await cache.stop()


async def owner(client: Client, namespace: str) -> dict[str, Any]:
    return await client.create(configmap("owner", namespace))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("bogus", "x", "field not declared in schema"),
        ("immutable", "yes", "expected boolean"),
    ],
)
async def test_a_child_that_does_not_fit_the_schema_is_rejected_with_the_servers_message(
    client: Client, namespace: str, children: Children, field: str, value: str, words: str
) -> None:
    parent = await owner(client, namespace)
    child = {**configmap("child", namespace), field: value}
    with pytest.raises(CHILD_ERRORS) as caught:
        await children.apply(parent, [child])
    error = caught.value
    assert isinstance(error, ChildRejected), f"{type(error).__name__}: {error}"
    assert is_rejection(error.error)
    problem = child_problem("ConfigMap child", error)
    assert problem.reason == "ChildRejected"
    assert words in problem.message, problem.message
    assert "ConfigMap" in problem.message and "child" in problem.message


async def test_a_child_the_server_finds_invalid_is_rejected_too(
    client: Client, namespace: str, children: Children
) -> None:
    parent = await owner(client, namespace)
    child = configmap("child", namespace, labels={"bad label": "x"})
    with pytest.raises(ChildRejected) as caught:
        await children.apply(parent, [child])
    assert caught.value.error.status == 422
    assert "metadata.labels" in str(caught.value)


async def test_a_rejected_child_does_not_stop_its_siblings_from_being_applied(
    client: Client, namespace: str, children: Children
) -> None:
    parent = await owner(client, namespace)
    good = configmap("good", namespace)
    with pytest.raises(ChildRejected):
        await children.apply(parent, [{**configmap("bad", namespace), "bogus": 1}, good])
    assert (await client.get(CM, "good", namespace))["data"] == {"key": "value"}
