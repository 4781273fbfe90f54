"""lab/certificates.py: the CA the lab and the tests trust, and the self-signed certificate a
host serves before it has a real one."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from lab.certificates import CertificateAuthority, self_signed


def test_a_certificate_the_authority_issues_verifies_under_rfc_5280() -> None:
    """cryptography's verifier holds the chain to RFC 5280 as strict clients do (Python 3.13's
    default context): it refuses a root without its key usage, a leaf without its authority
    key identifier."""
    authority = CertificateAuthority.create("strict test CA")
    issued = authority.issue(["www.example.test"])
    verifier = (
        PolicyBuilder()
        .store(Store([authority.root.certificate]))
        .time(datetime.datetime.now(datetime.UTC))
        .build_server_verifier(x509.DNSName("www.example.test"))
    )
    chain = verifier.verify(issued.certificate, [])
    assert chain == [issued.certificate, authority.root.certificate]


def test_a_self_signed_certificate_names_its_site_and_is_no_authority() -> None:
    made = self_signed("www.example.test", days=2)
    certificate = made.certificate
    assert certificate.issuer == certificate.subject
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["www.example.test"]
    assert not any(isinstance(e.value, x509.BasicConstraints) for e in certificate.extensions)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=2, minutes=5)
    certificate.verify_directly_issued_by(certificate)
