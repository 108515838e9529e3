"""A bare connection to the bench's API server: its URL and a TLS context from the kubeconfig that
``agentkube.testing.ControlPlane`` writes (certificate-authority and client-certificate data inline).

Used where no client library should stand in between: the floor's writes and the scrapes of the API
server's own ``/metrics``. Only that kubeconfig shape is understood (no tokens, no exec plugins).
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml


@dataclass(frozen=True)
class Connection:
    host: str
    ssl: ssl.SSLContext

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> Connection:
        config = yaml.safe_load(Path(path).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(cert, key)
        return cls(host=str(cluster["server"]).rstrip("/"), ssl=context)

    def session(self, limit: int = 100) -> aiohttp.ClientSession:
        """A session whose requests go to ``host`` (pass absolute paths: ``/metrics``), at most
        ``limit`` at once."""
        return aiohttp.ClientSession(
            base_url=self.host, connector=aiohttp.TCPConnector(ssl=self.ssl, limit=limit)
        )

    async def metrics(self, session: aiohttp.ClientSession) -> str:
        """The API server's ``/metrics`` text."""
        async with session.get("/metrics") as response:
            response.raise_for_status()
            return await response.text()
