"""`python -m lab.boot.truststore`: the RDS CA bundle URL's stand-in, an HTTPS file server.

The web nodes' userdata downloads https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
at boot. The boot lab's DNS sends that name to this server's address, whose certificate the
lab's test CA signed, and it serves the test CA (which signed the MariaDB servers' certificates)
as the bundle. Any other path is a 404, as on the real host.
"""

from __future__ import annotations

import argparse
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUNDLE_PATH = "/global/global-bundle.pem"


def serve(address: str, port: int, certificate: Path, key: Path, bundle: Path) -> None:
    content = bundle.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != BUNDLE_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-pem-file")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    server = ThreadingHTTPServer((address, port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--certificate", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    args = parser.parse_args()
    serve(args.address, args.port, args.certificate, args.key, args.bundle)


if __name__ == "__main__":
    main()
