"""What a TLS client sees of a server, for the HTTPS tests of HAProxy and of the lab."""

from __future__ import annotations

import socket
import ssl
import subprocess
from typing import Any


def handshake(
    address: str, port: int, server_name: str, context: ssl.SSLContext
) -> tuple[dict[str, Any], bytes, str | None, str]:
    """A TLS handshake with `server_name` in SNI: the certificate (decoded when the context
    verifies it), its DER bytes, the ALPN protocol chosen and the TLS version."""
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return (
            tls.getpeercert() or {},
            tls.getpeercert(binary_form=True) or b"",
            tls.selected_alpn_protocol(),
            tls.version() or "",
        )


def serial_number(certificate: dict[str, Any]) -> int:
    """The serial of a certificate as `getpeercert()` decodes it, as a number: its hex text is
    OpenSSL's, in whole bytes (a leading 0 when the first digit is one), so it must not be
    compared with a formatted integer."""
    return int(str(certificate["serialNumber"]), 16)


def openssl_client(
    openssl: str, address: str, port: int, server_name: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """`openssl s_client` with `options` (e.g. "-tls1"), SNI `server_name`; its output."""
    return subprocess.run(
        [
            openssl,
            "s_client",
            *options,
            "-servername",
            server_name,
            "-connect",
            f"{address}:{port}",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def refuses_protocol(openssl: str, address: str, port: int, server_name: str, flag: str) -> bool:
    """Whether the server refuses a handshake in protocol `flag` ("-tls1", "-tls1_1") that the
    client allows (security level 0): the server's protocol-version alert."""
    result = openssl_client(
        openssl, address, port, server_name, flag, "-cipher", "DEFAULT@SECLEVEL=0"
    )
    return "alert protocol version" in result.stdout + result.stderr
