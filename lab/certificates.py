"""A small certificate authority for the lab and the tests, made with `cryptography`.

The lab's ACME server (pebble) must serve its directory over HTTPS with a certificate the ACME
client trusts; the tests need a CA to stand in for Let's Encrypt when they check what HAProxy
serves or what `tools.verify` reports; and the lab's MariaDB servers serve TLS with a certificate
from it, standing in for the RDS CA (the app verifies the chain, not the name, as it does behind
the private zone's aliases on AWS). The boot lab's stand-ins get theirs from it too
(lab/boot/pki.py keeps that CA on disk for the run). Keys are ECDSA P-256, as certbot's. The
root has a subject key identifier and every certificate it signs an authority key identifier,
which strict verifiers (Python 3.13's default context, OpenSSL's X509_STRICT) require.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def unverified_context() -> ssl.SSLContext:
    """A TLS client context that records what a server presents without verifying it. Made
    bare, not by `ssl.create_default_context()`, which loads the system's trust store (some
    40 ms of CPU) for nothing here: a stream of 20 new connections a second spent most of a
    core on it, beside the hosts booting."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)


def self_signed(name: str, *, days: float = 30, authority: bool = False) -> Issued:
    """A certificate for `name` signed by its own new key: a CA's root (`authority`), or a
    server's for the DNS name `name`, as site_certificate.py makes one at first boot."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if authority:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return Issued(builder.sign(key, hashes.SHA256()), key)


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    root: Issued

    @staticmethod
    def create(name: str, *, days: float = 30) -> CertificateAuthority:
        return CertificateAuthority(name, self_signed(name, days=days, authority=True))

    @staticmethod
    def load(certificate: Path, key: Path) -> CertificateAuthority:
        """A CA that `save` wrote, for a process other than the one that created it."""
        root = x509.load_pem_x509_certificate(certificate.read_bytes())
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{key}: not an EC private key")
        name = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return CertificateAuthority(str(name), Issued(root, private))

    def save(self, certificate: Path, key: Path) -> None:
        """The root certificate, and its key readable by its owner only."""
        certificate.write_bytes(self.root.certificate_pem)
        key.touch(mode=0o600)
        key.chmod(0o600)
        key.write_bytes(self.root.key_pem)

    def issue(self, names: list[str], *, days: float = 90) -> Issued:
        """A server certificate for DNS names and IP addresses."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alternative: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.root.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root.key.public_key()),
                critical=False,
            )
            .sign(self.root.key, hashes.SHA256())
        )
        return Issued(certificate, key)

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root.certificate_pem)
        return path


def write_lineage(issued: Issued, ca: CertificateAuthority, directory: Path) -> Path:
    """Files as certbot keeps them in /etc/letsencrypt/live/<name>/ (for the deploy hook)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(issued.certificate_pem)
    (directory / "chain.pem").write_bytes(ca.root.certificate_pem)
    (directory / "fullchain.pem").write_bytes(issued.certificate_pem)
    key = directory / "privkey.pem"
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    return directory


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path


def write_tls_files(directory: Path, name: str = "lab", *, days: float = 30) -> TlsFiles:
    """A CA, and a certificate it signed for a server named db.<name>.internal (a name the app
    never uses: it verifies the chain, not the name, as with RDS behind an alias)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create(f"{name} test CA")
    server = ca.issue([f"db.{name}.internal"], days=days)
    files = TlsFiles(
        directory / f"{name}-ca.pem", directory / "server.pem", directory / "server.key"
    )
    ca.write_root(files.ca)
    files.certificate.write_bytes(server.certificate_pem)
    files.key.write_bytes(server.key_pem)
    files.key.chmod(0o600)
    return files
