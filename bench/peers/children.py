"""The children every peer writes for one bench MCP, built by agentkube's own pure builders.

``write_children(path, n)`` writes a JSON object: MCP name -> its children
(``agentkube.controllers.workload.desired_children`` of ``agentkube.controllers.mcp.workload`` for
the MCP ``bench.converge`` creates: ConfigMap, Deployment, Service, and the NetworkPolicy when
agentkube's default ``OperatorOptions`` give MCPs one, admitting no namespace beyond the MCP's own,
as for a bench MCP that no ReferenceGrant names), without owner references, which a peer sets from
the live MCP (its uid is known only once the MCP exists). So every operator in the benchmark writes
the objects agentkube writes, but for two things only agentkube has: its
``agentkube.io/desired-hash`` annotation (a digest of the child it applies, part of how it skips
writes), and the session-key Secret (created by agentkube, referenced by the Deployment of every
peer). The Deployment's config-hash annotation is computed from a fixed stand-in session key, so it
is a digest of the same shape as agentkube's.

The peers read their children from this file rather than building them: building them is
agentkube's work, counted in its CPU seconds; the peers' CPU covers the rest of the reconcile.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from agentkube.api.mcp import MCP_KIND
from agentkube.controllers import OperatorOptions, mcp
from agentkube.controllers.secrets import digest_secret
from agentkube.controllers.workload import desired_children
from bench.converge import _mcp

IMAGE = "ghcr.io/agentkube/agentkube:bench"
"""The data-plane image, the one ``bench.converge``'s manager is configured with."""

# What bench.converge puts in the Secret every bench MCP references ("pat", key "token").
_TOKEN = base64.b64encode(b"ghp_bench").decode()
# A stand-in for a session key ring (agentkube makes a random one per MCP).
_SESSION_KEYS = base64.b64encode(b"k1:" + b"0" * 44).decode()


def children_of(i: int) -> list[dict[str, Any]]:
    """The children of bench MCP number ``i`` (see the module docstring), without owner references."""
    obj = _mcp(i)
    name = obj["metadata"]["name"]
    owner = {**obj, "metadata": {**obj["metadata"], "uid": ""}}
    digests = {
        "pat/token": digest_secret({"data": {"token": _TOKEN}})["digests"]["token"],
        f"{mcp.session_secret_name(name)}/{mcp.SESSION_KEYS_KEY}": digest_secret(
            {"data": {mcp.SESSION_KEYS_KEY: _SESSION_KEYS}}
        )["digests"][mcp.SESSION_KEYS_KEY],
    }
    callers: list[str] | None = [] if OperatorOptions(dataplane_image=IMAGE).network_policies else None
    workload = mcp.workload(owner, MCP_KIND.parse(obj), IMAGE, {}, digests, callers)
    children = desired_children(workload)
    for child in children:
        child["metadata"].pop("ownerReferences", None)
    return children


def write_children(path: Path, n: int) -> Path:
    """Write the children of bench MCPs 0..n-1 to ``path`` (see the module docstring); returns it."""
    path.write_text(json.dumps({f"mcp-{i:05d}": children_of(i) for i in range(n)}))
    return path
