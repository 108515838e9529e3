"""Secrets, as the operator sees them: key names and a digest of each value, never the values.

The operator needs two things from a Secret: whether a referenced key exists (to accept an object or
say what is missing) and whether a value changed (to roll the pods that read it). Neither needs the
value, so the Secret informer stores a transformed copy: the value of each key is replaced by its
SHA-256 digest before the object reaches the cache, and annotations are dropped
(``kubectl.kubernetes.io/last-applied-configuration`` holds ``stringData`` in clear). Nothing derived
from a value but its digest exists after the transform; the pod-template hash that rolls pods is
computed from digests.

What a caller may rely on:

- ``digest_secret`` is the transform of the Secret watch, passed where the watch is declared
  (``builder.watches(SECRET, ..., transform=digest_secret)``; the workload kinds declare it in
  ``WorkloadReconciler.controller``). The cache stores a kind one way only: a declaration with another
  transform fails when its controller is completed, so values cannot reach the cache by omission.
- A cached Secret has ``metadata`` (name, namespace, uid, resourceVersion, labels), ``type`` and
  ``digests`` (key -> ``sha256:<hex>``); no ``data``, no ``stringData``, no annotations.
- ``SecretReferences`` checks an object's references against the cache and collects, for each key,
  its digest, or a ``Problem`` (``SecretNotFound`` / ``SecretKeyNotFound``) whose message names the
  object, the field, the Secret and the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from agentkube.controllers.kinds import SECRET
from agentkube.controllers.status import Problem

__all__ = ["SecretReferences", "digest_secret"]


_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
)


def _digest(encoded: Any) -> str:
    try:
        raw = base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        # Not base64 (the API server never sends that): digest the text itself, still no value kept.
        raw = str(encoded).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def digest_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """The cache transform for Secrets: key names and value digests only (see the module docstring)."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Secret"),
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
        "type": obj.get("type", "Opaque"),
        "digests": {key: _digest(value) for key, value in (obj.get("data") or {}).items()},
    }


class SecretReferences:
    """The Secret keys one object references, checked against the cache.

    ``owner`` is how messages name the object (``MCP team-a/github-tools``); ``namespace`` is where its
    Secrets live (references cannot leave the object's namespace).
    """

    def __init__(self, cache: Any, owner: str, namespace: str) -> None:
        self._cache = cache
        self._owner = owner
        self.namespace = namespace
        self.problems: list[Problem] = []
        self.digests: dict[str, str] = {}
        """``<secret>/<key>`` -> digest of every key found, for the config hash."""

    def _secret(self, field: str, name: str, wanted: str) -> dict[str, Any] | None:
        secret: dict[str, Any] | None = self._cache.get(SECRET, name, self.namespace)
        if secret is None:
            self.problems.append(
                Problem(
                    "SecretNotFound",
                    f'{self._owner}: {field}: Secret "{name}" not found in namespace "{self.namespace}"; '
                    f"create it with {wanted}",
                )
            )
        return secret

    def key(self, field: str, name: str, key: str, *, optional: bool = False) -> bool:
        """Check that Secret ``name`` has ``key``; True when it does (or may be missing: ``optional``)."""
        secret = (
            self._cache.get(SECRET, name, self.namespace)
            if optional
            else self._secret(field, name, f'key "{key}"')
        )
        if secret is None:
            return optional
        digest = (secret.get("digests") or {}).get(key)
        if digest is None:
            if optional:
                return True
            self.problems.append(
                Problem("SecretKeyNotFound", f'{self._owner}: {field}: Secret "{name}" has no key "{key}"')
            )
            return False
        self.digests[f"{name}/{key}"] = digest
        return True

    def keys(self, field: str, name: str) -> list[str] | None:
        """The key names of Secret ``name`` (all of whose values the object uses), or None if missing."""
        secret = self._secret(field, name, "one key per client")
        if secret is None:
            return None
        digests = secret.get("digests") or {}
        for key in sorted(digests):
            self.digests[f"{name}/{key}"] = digests[key]
        return sorted(digests)
