"""Pure parts of agentkube.testing: finding the binaries, the certificates."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from agentkube.testing import ControlPlaneError, find_assets
from agentkube.testing.pki import PKI


def test_missing_assets_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(ControlPlaneError, match=r"hack/build-envtest\.sh") as missing:
        find_assets()
    assert str(tmp_path) in str(missing.value)


def test_empty_cache_names_the_build_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("AGENTKUBE_ENVTEST_CACHE", str(tmp_path))
    with pytest.raises(ControlPlaneError, match=r"run hack/build-envtest\.sh"):
        find_assets()


def test_assets_env_wins_over_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("etcd", "kube-apiserver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert find_assets() == tmp_path


def test_admin_certificate_is_a_cluster_admin_signed_by_the_ca() -> None:
    pki = PKI()
    ca = x509.load_pem_x509_certificate(pki.ca.cert)
    admin = x509.load_pem_x509_certificate(pki.admin.cert)
    admin.verify_directly_issued_by(ca)
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    serving = x509.load_pem_x509_certificate(pki.serving.cert)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
