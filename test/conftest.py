"""Session set-up shared by every tier: which CRDs the control plane gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.testing import AGENTGATEWAY_CRDS_ENV, cached_crd_dirs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def agentkube_crd_paths() -> list[Path]:
    ours = ROOT / "config" / "crd" / "bases"
    return ([ours] if ours.is_dir() else []) + cached_crd_dirs()


def pytest_report_header(config: pytest.Config) -> str:
    """Which agentgateway CRDs the ToolGateway tests run against, and why."""
    real = [d for d in cached_crd_dirs() if any(d.glob("agentgateway.dev_*.yaml"))]
    if real:
        return f"agentgateway CRDs: the real ones from {real[0]}"
    return (
        f"agentgateway CRDs: the project's stand-ins ({AGENTGATEWAY_CRDS_ENV} names no directory of "
        "agentgateway's own; `make test` sets it to ../shared/third_party/agentgateway-crds-v1.4.1 if there)"
    )
