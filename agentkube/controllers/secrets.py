"""Secrets, as the operator sees them: key names and a digest of each value, never the values.

The operator needs two things from a Secret: whether a referenced key exists (to accept an object or
say what is missing) and whether a value changed (to roll the pods that read it). Neither needs the
value, so the Secret informer stores a transformed copy: the value of each key is replaced by a
keyed digest (HMAC-SHA256) before the object reaches the cache, and annotations are dropped
(``kubectl.kubernetes.io/last-applied-configuration`` holds ``stringData`` in clear). Nothing derived
from a value but its digest exists after the transform; the pod-template hash that rolls pods is
computed from digests.

Why keyed: the pod template carries a hash over these digests, and anyone who may read Deployments
could otherwise test guesses of a weak Secret offline (hash each guess, compare). The key lives in
the Secret ``agentkube-digest-key`` (key ``key``) of the operator's namespace, made with 32 random
bytes on the first start (``load_digest_key``) and read before the informers start; without it
neither a digest nor a pod-template hash can be recomputed. Changing or deleting that Secret changes
every digest, so every workload's pods roll once at the next start (nothing else happens).

What a caller may rely on:

- ``secret_transform(key)`` is the transform of the Secret watch, passed where the watch is declared
  (``builder.watches(SECRET, ..., transform=secret_transform(key))``; the workload kinds declare it in
  ``WorkloadReconciler.controller``). The same key gives the same function (the cache compares
  transforms by identity), and the cache stores a kind one way only: a declaration with another
  transform fails when its controller is completed, so values cannot reach the cache by omission.
- ``digest_secret(obj, key)`` is that transform as a plain function.
- A cached Secret has ``metadata`` (name, namespace, uid, resourceVersion, labels), ``type`` and
  ``digests`` (key -> ``hmac-sha256:<hex>``); no ``data``, no ``stringData``, no annotations.
- ``SecretReferences`` checks an object's references against the cache and collects, for each key,
  its digest, or a ``Problem`` (``SecretNotFound`` / ``SecretKeyNotFound``) whose message names the
  object, the field, the Secret and the key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkube.controllers.kinds import SECRET
from agentkube.controllers.status import Problem
from agentkube.runtime.errors import AlreadyExists, NotFound

__all__ = [
    "DIGEST_KEY_FIELD",
    "DIGEST_KEY_SECRET",
    "SecretReferences",
    "digest_secret",
    "load_digest_key",
    "operator_namespace",
    "process_key",
    "secret_transform",
]

DIGEST_KEY_SECRET = "agentkube-digest-key"
"""The Secret of the operator's namespace holding the key of every Secret value digest."""
DIGEST_KEY_FIELD = "key"
DIGEST_KEY_BYTES = 32
_MIN_KEY_BYTES = 16
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
)


def _digest(encoded: Any, key: bytes) -> str:
    try:
        raw = base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        # Not base64 (the API server never sends that): digest the text itself, still no value kept.
        raw = str(encoded).encode()
    return "hmac-sha256:" + hmac.new(key, raw, hashlib.sha256).hexdigest()


def digest_secret(obj: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """The cache transform for Secrets under ``key`` (None: this process's ``process_key``): key names
    and value digests only (see the module docstring)."""
    if key is None:
        key = process_key()
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Secret"),
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
        "type": obj.get("type", "Opaque"),
        "digests": {name: _digest(value, key) for name, value in (obj.get("data") or {}).items()},
    }


@functools.cache
def secret_transform(key: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``digest_secret`` under ``key`` as a one-argument transform; the same key gives the same object."""
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"a digest key needs at least {_MIN_KEY_BYTES} bytes, got {len(key)}")
    return functools.partial(digest_secret, key=key)


@functools.cache
def process_key() -> bytes:
    """A random digest key, the same for the whole process: for a manager given no key (tests), so
    that its digests are keyed too. Another process has another one (and its pods roll)."""
    return os.urandom(DIGEST_KEY_BYTES)


def operator_namespace(given: str | None = None) -> str:
    """The namespace the operator runs in: ``given`` (a flag), else ``$POD_NAMESPACE`` (the downward
    API, as config/manager sets it), else the service account's namespace file, else ``default``."""
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _key_of(secret: dict[str, Any], namespace: str) -> bytes:
    encoded = (secret.get("data") or {}).get(DIGEST_KEY_FIELD)
    try:
        key = base64.b64decode(str(encoded), validate=True) if encoded is not None else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(
            f"Secret {namespace}/{DIGEST_KEY_SECRET}: data.{DIGEST_KEY_FIELD} must hold at least "
            f"{_MIN_KEY_BYTES} random bytes; delete the Secret to have the operator make a new key "
            "(every workload's pods then roll once)"
        )
    return key


async def load_digest_key(client: Any, namespace: str) -> bytes:
    """The digest key from Secret ``agentkube-digest-key`` in ``namespace``, made when absent.

    Two operators starting at once both end with the one that was created: a create that finds the
    Secret already there reads it. Needs get and create of Secrets in ``namespace`` (config/rbac's
    digest-key Role). Raises ``ValueError`` for a Secret without a usable key.
    """
    try:
        return _key_of(await client.get(SECRET, DIGEST_KEY_SECRET, namespace), namespace)
    except NotFound:
        pass
    secret = {
        "apiVersion": SECRET.api_version,
        "kind": SECRET.kind,
        "metadata": {
            "name": DIGEST_KEY_SECRET,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "agentkube", "app.kubernetes.io/part-of": "agentkube"},
        },
        "type": "Opaque",
        "data": {DIGEST_KEY_FIELD: base64.b64encode(os.urandom(DIGEST_KEY_BYTES)).decode()},
    }
    try:
        return _key_of(await client.create(secret), namespace)
    except AlreadyExists:
        return _key_of(await client.get(SECRET, DIGEST_KEY_SECRET, namespace), namespace)


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
