"""kubernetes-asyncio's configuration, credentials and connection pool, without its generated API.

``import kubernetes_asyncio.config`` first runs the package's ``__init__``, which imports the whole
generated client: every model and API class, about 35 MiB of memory (a quarter of a manager's peak
at 1,000 MCPs) and a few hundred milliseconds of start, none of which this project uses. This module
imports only the parts that ``Client`` uses: ``Configuration`` and the kubeconfig and in-cluster
loaders.

How: while those load, ``kubernetes_asyncio`` and ``kubernetes_asyncio.client`` stand in
``sys.modules`` as packages whose ``__init__`` has not run yet (``_Deferred``). The first time
anyone asks either for a name it does not have (``from kubernetes_asyncio.client import
CoreV1Api``), its real ``__init__`` runs in it, so other code in the process (a user's, a test's)
sees the whole package as usual, with the same ``Configuration`` class. If ``kubernetes_asyncio``
was imported before this module, it is used as it is.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigException",
    "Configuration",
    "load_incluster_config",
    "load_kube_config",
]

_ROOT = "kubernetes_asyncio"
_CLIENT = "kubernetes_asyncio.client"


class _Deferred(types.ModuleType):
    """A package whose ``__init__`` runs on the first look-up of a name it does not have."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self.__dict__.get("_agentkube_initialized"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.__dict__["_agentkube_initialized"] = True
        init = self.__dict__["__file__"]
        exec(compile(Path(init).read_bytes(), init, "exec"), self.__dict__)
        return getattr(self, name)


def _deferred(name: str, directory: Path) -> _Deferred:
    init = str(directory / "__init__.py")
    module = _Deferred(name)
    spec = importlib.machinery.ModuleSpec(
        name, importlib.machinery.SourceFileLoader(name, init), origin=init, is_package=True
    )
    spec.submodule_search_locations = [str(directory)]
    spec.has_location = True
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = init
    module.__path__ = [str(directory)]
    module.__package__ = name
    return module


def _api_client(*args: Any, **kwargs: Any) -> Any:
    """``ApiClient`` as ``kube_config`` names it at import (it calls it only in
    ``new_client_from_config``): the real class, imported when first called."""
    from kubernetes_asyncio.client.api_client import ApiClient

    return ApiClient(*args, **kwargs)


def _import_light() -> None:
    if _ROOT in sys.modules:
        return
    spec = importlib.util.find_spec(_ROOT)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kubernetes_asyncio is not installed")
    directory = Path(next(iter(spec.submodule_search_locations)))
    root = _deferred(_ROOT, directory)
    client = _deferred(_CLIENT, directory / "client")
    root.client = client  # type: ignore[attr-defined]
    sys.modules[_ROOT] = root
    sys.modules[_CLIENT] = client
    try:
        # import_module, not ``from ... import``: a from-import asks the package first, which
        # would run its __init__.
        configuration = importlib.import_module(_CLIENT + ".configuration")
        client.Configuration = configuration.Configuration  # type: ignore[attr-defined]
        client.ApiClient = _api_client  # type: ignore[attr-defined]
        importlib.import_module(_ROOT + ".config")
    except BaseException:
        for name in [n for n in sys.modules if n == _ROOT or n.startswith(_ROOT + ".")]:
            del sys.modules[name]
        raise
    finally:
        # A later look-up of ApiClient runs the real __init__, which binds the real class.
        client.__dict__.pop("ApiClient", None)


_import_light()

from kubernetes_asyncio.client.configuration import Configuration  # noqa: E402
from kubernetes_asyncio.config import (  # noqa: E402
    ConfigException,
    load_incluster_config,
    load_kube_config,
)
