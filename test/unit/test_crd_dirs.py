"""Which third-party CRD directories the harness and ``make run`` install."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.testing import AGENTGATEWAY_CRDS_ENV, ControlPlaneError, cached_crd_dirs


def _module(cache: Path, name: str) -> Path:
    directory = cache / "agentkube" / "crds" / name
    directory.mkdir(parents=True)
    (directory / "crd.yaml").write_text("kind: CustomResourceDefinition\n")
    return directory


def test_the_newest_version_of_each_module_and_then_the_named_agentgateway_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(AGENTGATEWAY_CRDS_ENV, raising=False)
    for version in ("v1.4.1", "v1.6.1", "v1.10.0", "v1.6.0"):
        _module(tmp_path, f"gateway-api@{version}")
    other = _module(tmp_path, "other@v0.2.0")
    assert cached_crd_dirs() == [tmp_path / "agentkube/crds/gateway-api@v1.10.0", other]
    real = tmp_path / "agentgateway-crds"
    real.mkdir()
    (real / "agentgateway.dev_agentgatewaybackends.yaml").write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setenv(AGENTGATEWAY_CRDS_ENV, str(real))
    assert cached_crd_dirs()[-1] == real


def test_a_named_directory_without_crds_is_an_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(AGENTGATEWAY_CRDS_ENV, str(tmp_path / "missing"))
    with pytest.raises(ControlPlaneError, match=AGENTGATEWAY_CRDS_ENV):
        cached_crd_dirs()
    monkeypatch.setenv(AGENTGATEWAY_CRDS_ENV, "")
    assert cached_crd_dirs() == []
