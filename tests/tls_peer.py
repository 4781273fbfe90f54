"""What a TLS client sees of a server, for the HTTPS tests of HAProxy and of the lab."""

from __future__ import annotations

import socket
import ssl
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
