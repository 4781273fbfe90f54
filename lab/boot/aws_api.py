"""`python -m lab.boot.aws_api`: moto's server, recording who made every call.

moto answers AWS's APIs for the boot lab, but it does not tell who called: without IAM
enforcement it takes any key, and with it (`INITIAL_NO_AUTH_ACTION_COUNT`) it checks actions
against the resource `*` only. So this runs moto's own WSGI application (what `moto_server`
runs) behind a small recorder: for every request it writes one JSON line with the access key
id from the request's SigV4 signature, the host and role that key belongs to (the metadata
stand-in's `credentials.json`, `lab.boot.metadata`; for an unsigned request, the host whose
address sent it), the service and region of the signature's
scope, the method, path, query, the `X-Amz-Target` header, the body of API calls (form or JSON
requests; object bodies are left out), and moto's status code. `lab.boot.calls` turns each
line into the IAM action and resource ARN that AWS would authorise.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab.boot.metadata import load_identities

# The signature's scope: Credential=<key>/<date>/<region>/<service>/aws4_request
SCOPE = re.compile(r"Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
API_BODIES = ("application/x-www-form-urlencoded", "application/x-amz-json")
MAX_BODY = 64 * 1024

StartResponse = Callable[..., Any]


class Recorder:
    """WSGI middleware: record each request in `log`, then let moto answer it."""

    def __init__(self, app: Any, credentials: Path, log: Path) -> None:
        self.app = app
        self.credentials = credentials
        self.log = log
        self.lock = threading.Lock()

    def who(self, access_key: str | None, address: str) -> tuple[str | None, str | None]:
        """The host and role of a call: by the key that signed it, else (an unsigned request,
        such as a download of a public object) by its source address on the bridge."""
        # Read on every call: the lab writes the file before any host boots, after moto starts.
        identities = load_identities(self.credentials)
        for identity in identities:
            if access_key is not None and identity.access_key_id == access_key:
                return identity.host, identity.role
        for identity in identities:
            if access_key is None and identity.address == address:
                return identity.host, identity.role
        return None, None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        query = environ.get("QUERY_STRING", "")
        scope = SCOPE.search(authorization) or SCOPE.search(query.replace("%2F", "/"))
        access_key, region, service = scope.groups() if scope else (None, None, None)
        content_type = environ.get("CONTENT_TYPE", "")
        body = ""
        if content_type.startswith(API_BODIES):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            body = raw[:MAX_BODY].decode("utf-8", "replace")
        address = environ.get("REMOTE_ADDR", "")
        host, role = self.who(access_key, address)
        entry: dict[str, Any] = {
            "time": time.time(),
            "source_address": address,
            "signed": access_key is not None,
            "access_key_id": access_key,
            "host": host,
            "role": role,
            "service": service,
            "region": region,
            "http_host": environ.get("HTTP_HOST", ""),
            "method": environ.get("REQUEST_METHOD", ""),
            "path": environ.get("PATH_INFO", ""),
            "query": query,
            "target": environ.get("HTTP_X_AMZ_TARGET", ""),
            "body": body,
        }

        def recording_start_response(status: str, headers: Any, *rest: Any) -> Any:
            entry["status"] = int(status.split(maxsplit=1)[0])
            with self.lock, self.log.open("a") as output:
                output.write(json.dumps(entry) + "\n")
            return start_response(status, headers, *rest)

        return self.app(environ, recording_start_response)  # type: ignore[no-any-return]


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 - only the server needs it
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--ssl-cert", required=True)
    parser.add_argument("--ssl-key", required=True)
    parser.add_argument("--credentials", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server sets it
    app = Recorder(DomainDispatcherApplication(create_backend_app), args.credentials, args.record)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        ssl_context=(args.ssl_cert, args.ssl_key),
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
