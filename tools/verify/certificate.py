"""The certificate check of `tools.verify` (with a domain): the certificate the site serves is
trusted, made out to the site's name, and has at least two weeks left."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tools.verify.report import Check, Facts, cut

CERTIFICATE_MIN_DAYS = 14  # certbot renews 30 days ahead: 14 left means two weeks of failures


def check_certificate(
    https_url: str,
    *,
    timeout: float,
    ca_file: str | None = None,
    address: str | None = None,
    min_days: int = CERTIFICATE_MIN_DAYS,
) -> Check:
    """The certificate the site serves: trusted (the system's roots, or `ca_file`), made out to
    the site's name, with at least `min_days` left. `address`: connect there instead of
    resolving the name (the name still goes in SNI and is checked)."""
    try:
        parts = urllib.parse.urlsplit(https_url)
        host, port = parts.hostname or "", parts.port or 443
    except ValueError as error:  # a port out of range or not a number
        return Check("https certificate", "an https:// URL", f"not a URL: {cut(str(error))}", False)
    expected = f"trusted, names {host}, >= {min_days} days left"
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with (
            socket.create_connection((address or host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate: dict[str, Any] = dict(tls.getpeercert() or {})
    except ssl.SSLCertVerificationError as error:
        return Check("https certificate", expected, f"not trusted: {error.verify_message}", False)
    except (OSError, ssl.SSLError) as error:
        return Check("https certificate", expected, f"no TLS answer: {error}", False)
    facts = Facts()
    issuer = dict(item[0] for item in certificate.get("issuer", ()))
    facts.add(f"issuer {issuer.get('organizationName') or issuer.get('commonName', '?')}")
    names = [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    facts.add(f"names {' '.join(names)}", True)  # the handshake checked the name already
    left = (ssl.cert_time_to_seconds(str(certificate["notAfter"])) - time.time()) / 86400
    facts.add(f"{left:.0f} days left", left >= min_days)
    return facts.check("https certificate", expected)
