"""Session set-up shared by every tier: which CRDs the control plane gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.testing import cached_crd_dirs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def agentkube_crd_paths() -> list[Path]:
    ours = ROOT / "config" / "crd" / "bases"
    return ([ours] if ours.is_dir() else []) + cached_crd_dirs()
