"""A watch whose connection goes silent is noticed within 45 s, and the cache recovers after.

SIGSTOP freezes kube-apiserver with its sockets open: the kernel keeps the TCP connection alive, so
nothing but silence tells the watch that nobody is there (as with a half-open connection behind a
NAT that forgot it). Bookmarks keep a healthy watch talking; the inactivity timeout does the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.informer import Informer
from agentkube.testing.controlplane import ControlPlane
from test.integration.runtime_helpers import CM, configmap, eventually

pytestmark = pytest.mark.integration

NOTICE_WITHIN = 45.0


def stalls(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("agentkube_watch_stalls_total", {"kind": kind}) or 0.0


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_silent_watch_is_noticed_within_45_s_and_the_cache_recovers(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    assert control_plane.apiserver is not None and control_plane.apiserver.pid is not None
    pid = control_plane.apiserver.pid
    await client.create(configmap("before", namespace))
    informer = Informer(client, CM, namespace=namespace)
    kind = str(CM)
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_for_sync(60)
        # An event through the watch: it is established, not merely asked for.
        await client.create(configmap("warm-up", namespace))
        await eventually(
            lambda: informer.store.get(ObjectKey(namespace, "warm-up")) is not None, "the watch delivers"
        )
        before = stalls(kind)
        with frozen(pid):
            stopped = time.monotonic()
            await eventually(
                lambda: stalls(kind) > before,
                "the reflector notices the silent watch",
                within=NOTICE_WITHIN + 30,
            )
            noticed = time.monotonic() - stopped
        print(f"silent watch noticed {noticed:.1f} s after the API server stopped")
        assert noticed < NOTICE_WITHIN, f"noticed after {noticed:.1f} s"
        # Back from the freeze: the reflector resumes (or relists) and sees what changes next.
        await client.create(configmap("after", namespace))
        await eventually(
            lambda: informer.store.get(ObjectKey(namespace, "after")) is not None,
            "the cache recovers after the freeze",
            within=90,
        )
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
