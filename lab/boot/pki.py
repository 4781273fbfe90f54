"""A throwaway certificate authority for one boot-lab run, and the certificates it signs.

On AWS the hosts trust Amazon's public CAs (for the AWS APIs and the truststore URL) and the RDS
CA bundle (for MySQL's TLS). Here one test CA signs every stand-in's certificate: the AWS API
stand-in, the truststore stand-in and both MariaDB servers. The containers trust it as a system
CA (added outside the userdata), and the truststore stand-in serves it as the "RDS CA bundle",
so the app verifies the database's certificate chain exactly as it does on AWS. A new CA is
made for every run and its key never leaves the run's state folder.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "web-infra boot lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class CertificateAuthority:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.certificate_path = folder / "ca.pem"
        self._key_path = folder / "ca.key"

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("web-infra boot lab test CA"))
            .issuer_name(_name("web-infra boot lab test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_key(key, self._key_path)
        self.certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    @property
    def pem(self) -> bytes:
        return self.certificate_path.read_bytes()

    def issue(self, name: str, dns_names: list[str], addresses: list[str]) -> KeyPair:
        """A server certificate for `dns_names` and `addresses`, signed by this CA."""
        ca_key = serialization.load_pem_private_key(self._key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the boot lab's CA key must be an EC key")
        ca_certificate = x509.load_pem_x509_certificate(self.pem)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alternative_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(dns_names[0] if dns_names else name))
            .issuer_name(ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pair = KeyPair(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        _write_key(key, pair.key)
        pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return pair
