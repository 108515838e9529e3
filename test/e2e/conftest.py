"""The e2e tier's shared fixture: one local cluster per session, started only if a test asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from test.e2e.cluster_harness import LocalCluster, start_local_cluster


@pytest.fixture(scope="session")
def local_cluster(
    agentkube_crd_paths: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    yield from start_local_cluster(agentkube_crd_paths, tmp_path_factory.mktemp("local-cluster"))
