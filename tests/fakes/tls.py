"""A throwaway TLS identity for 127.0.0.1, so fakes can be served over real HTTPS.

Service objects only accept ``https`` custom URLs, and the relay must not grow a test-only
"allow http" switch. So end-to-end tests serve the fake Opsgenie over TLS with a
self-signed certificate and hand it to the relay subprocess as its trust store
(``SSL_CERT_FILE``, which httpx honours): production code and validation stay as they are.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.types import ASGIApp

from tests.fakes.servers import UvicornThread


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert: Path
    key: Path


def self_signed(directory: Path) -> TLSFiles:
    """A CA-flagged self-signed certificate for ``127.0.0.1`` and ``localhost``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay-tests")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    files = TLSFiles(cert=directory / "tls-cert.pem", key=directory / "tls-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def https_server(app: ASGIApp, tls: TLSFiles) -> UvicornThread:
    """A ``UvicornThread`` that speaks HTTPS; its base URL is ``https_url(server)``."""
    server = UvicornThread(app)
    server.server.config.ssl_certfile = str(tls.cert)
    server.server.config.ssl_keyfile = str(tls.key)
    return server


def https_url(server: UvicornThread) -> str:
    return f"https://{server.host}:{server.port}"
