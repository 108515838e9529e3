"""Server-side apply through ``Client.apply``: taking another manager's fields is asked for, never implied."""

from __future__ import annotations

import pytest

from agentkube.runtime.client import Client
from agentkube.runtime.errors import Conflict
from test.integration.runtime_helpers import CM, configmap


async def test_apply_does_not_take_fields_another_manager_owns_unless_forced(
    client: Client, namespace: str
) -> None:
    await client.apply(configmap("shared", namespace, {"owner": "theirs"}), field_manager="someone-else")
    with pytest.raises(Conflict) as caught:
        await client.apply(configmap("shared", namespace, {"owner": "ours"}), field_manager="agentkube-test")
    assert "owner" in str(caught.value), "the conflict names the contested field"
    assert (await client.get(CM, "shared", namespace))["data"] == {"owner": "theirs"}

    taken = await client.apply(
        configmap("shared", namespace, {"owner": "ours"}), field_manager="agentkube-test", force=True
    )
    assert taken["data"] == {"owner": "ours"}
