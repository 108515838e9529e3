"""The certificates a throwaway control plane needs, made in memory with ``cryptography``.

One CA signs the kube-apiserver's serving certificate and the admin client certificate
(``O=system:masters``, so RBAC lets it do anything); a separate RSA key signs service-account tokens.
The same CA signs kube-controller-manager's client certificate (``system:kube-controller-manager``)
and its serving certificate, so the API server trusts the one and a health check can verify the other.
Keys are ECDSA P-256 where Kubernetes accepts them, because they are generated in microseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PKI", "CertKey", "CertificateAuthority"]

_VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM private key."""

    cert: bytes
    key: bytes


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A self-signed CA (ECDSA P-256, valid from five minutes ago for a week) and the leaves it signs."""

    def __init__(self, common_name: str) -> None:
        self._now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)  # clock skew
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = _name(common_name)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca = CertKey(self.certificate.public_bytes(serialization.Encoding.PEM), _pem_key(self._key))

    def leaf(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None = None
    ) -> CertKey:
        """A certificate for ``subject`` with extended key usage ``usage`` (and ``sans``), and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return CertKey(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))

    def server(self, hosts: list[str]) -> CertKey:
        """A serving certificate for ``hosts`` (IP addresses and DNS names), named after the first."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self.leaf(_name(hosts[0]), ExtendedKeyUsageOID.SERVER_AUTH, sans)


class PKI:
    """A CA plus the leaf certificates of one control plane."""

    def __init__(self) -> None:
        self._authority = CertificateAuthority("agentkube-envtest-ca")
        self.ca = self._authority.ca
        self.serving = self._leaf(
            _name("kube-apiserver"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ],
        )
        self.admin = self.client("admin", ["system:masters"])
        # With --use-service-account-credentials=false every controller acts as this one user, and the
        # bootstrap ClusterRole system:kube-controller-manager only covers the shared informers and the
        # token controller (it cannot, say, create a ReplicaSet). The union of the controllers' own
        # roles (system:controller:*) is close to everything anyway (the garbage collector and the
        # namespace controller delete any kind), so the user is in system:masters, like the admin.
        self.controller_manager = self.client("system:kube-controller-manager", ["system:masters"])
        self.controller_manager_serving = self._leaf(
            _name("kube-controller-manager"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.service_account = CertKey(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            _pem_key(sa_key),
        )

    def client(self, user: str, groups: list[str] | None = None) -> CertKey:
        """A client certificate the API server authenticates as ``user`` in ``groups``.

        For a service account, ``user`` is ``system:serviceaccount:<namespace>:<name>``: RBAC matches
        ServiceAccount subjects by that user name, so the certificate stands in for the token.
        """
        # RFC 5280 caps a common name at 64 characters; service-account user names run longer and
        # kube-apiserver reads the CN without that cap, so the check is skipped.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user, _validate=False)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups or []]
        return self._leaf(x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH)

    def _leaf(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None = None
    ) -> CertKey:
        return self._authority.leaf(subject, usage, sans)

    def write(self, directory: Path) -> dict[str, Path]:
        """Write every file the processes read; returns their paths by role."""
        files = {
            "ca.crt": self.ca.cert,
            "serving.crt": self.serving.cert,
            "serving.key": self.serving.key,
            "admin.crt": self.admin.cert,
            "admin.key": self.admin.key,
            "sa.pub": self.service_account.cert,
            "sa.key": self.service_account.key,
            "controller-manager-serving.crt": self.controller_manager_serving.cert,
            "controller-manager-serving.key": self.controller_manager_serving.key,
        }
        paths = {}
        for name, data in files.items():
            path = directory / name
            path.write_bytes(data)
            path.chmod(0o600)
            paths[name] = path
        return paths
