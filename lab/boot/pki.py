"""The boot lab's certificate authority: one per run, kept in the run's state folder.

On AWS the hosts trust Amazon's public CAs (for the AWS APIs and the truststore URL) and the RDS
CA bundle (for MySQL's TLS). Here one test CA signs every stand-in's certificate: the AWS API
stand-ins, the truststore stand-in and both MariaDB servers. The containers trust it as a system
CA (added outside the userdata), and the truststore stand-in serves it as the "RDS CA bundle",
so the app verifies the database's certificate chain exactly as it does on AWS. The CA itself is
lab/certificates.py's; this keeps it on disk, because `up`, `reboot` and the tests that follow
are separate processes. Its key never leaves the run's state folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab import certificates

VALIDITY_DAYS = 2
"""A run lasts minutes; a CA left behind by a crashed run is useless within days."""


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    key: Path


class CertificateAuthority:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.certificate_path = folder / "ca.pem"
        self._key_path = folder / "ca.key"

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        authority = certificates.CertificateAuthority.create(
            "web-infra boot lab test CA", days=VALIDITY_DAYS
        )
        authority.save(self.certificate_path, self._key_path)

    @property
    def pem(self) -> bytes:
        return self.certificate_path.read_bytes()

    def issue(self, name: str, dns_names: list[str], addresses: list[str]) -> KeyPair:
        """A server certificate for `dns_names` and `addresses`, signed by this CA, written as
        <name>.pem and <name>.key (0600) next to it."""
        authority = certificates.CertificateAuthority.load(self.certificate_path, self._key_path)
        issued = authority.issue([*dns_names, *addresses], days=VALIDITY_DAYS)
        pair = KeyPair(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        pair.key.touch(mode=0o600)
        pair.key.chmod(0o600)
        pair.key.write_bytes(issued.key_pem)
        pair.certificate.write_bytes(issued.certificate_pem)
        return pair
