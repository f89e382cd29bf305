"""A self-signed TLS identity for any DNS names, to test what a client verifies.

``tests.fakes.tls`` covers 127.0.0.1 and ``localhost``; tests that reach a loopback
server by some other name (through an injected resolver) need a certificate for that
name, and one for a different name to show verification fails.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.tls import TLSFiles


def self_signed_for(directory: Path, *names: str) -> TLSFiles:
    """A CA-flagged certificate whose SANs are exactly ``names`` (DNS names)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    files = TLSFiles(cert=directory / f"{names[0]}-cert.pem", key=directory / f"{names[0]}-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def trusting(files: TLSFiles) -> ssl.SSLContext:
    """A client context that trusts only ``files``' certificate, with hostname checks on."""
    context = ssl.create_default_context(cafile=str(files.cert))
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    return context
