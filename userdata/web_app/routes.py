"""The app's HTTP answers: /health (what this process knows, without asking a database), the
page at /, and /api/messages (read and write), each an honest status when a database fails.
"""

import html
import json
import logging
from datetime import datetime
from http import HTTPStatus

from .failures import KeyReused, NotTried, OutcomeUnknown, Unavailable
from .request_input import BadRequest, idempotency_key, read_after, request_text

log = logging.getLogger("web_app")

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>web-infra</title></head>
<body><h1>Served by {node}</h1><p>Read from the {read_from}. Reload to watch round robin.</p>
<form id="f"><input name="text" maxlength="500" required><button>Write</button></form>
<ul>{items}</ul><script>document.getElementById("f").onsubmit=async e=>{{e.preventDefault();
await fetch("/api/messages",{{method:"POST",headers:{{"Content-Type":"application/json"}},
body:JSON.stringify({{text:e.target.text.value}})}});location.reload()}}</script></body></html>"""
ROUTES = {"/health": "GET, HEAD", "/": "GET, HEAD", "/api/messages": "GET, HEAD, POST"}
RETRY = [("Retry-After", "1")]


class App:
    def __init__(self, node_name, database):
        self.node = node_name
        self.db = database

    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        try:
            status, body, headers = self.route(method, path, environ)
        except Exception:
            log.exception("%s %s failed", method[:20], path[:100])
            status, body, headers = 500, {"error": "internal error"}, []
        content_type = "text/html; charset=utf-8"
        if isinstance(body, dict):
            body = json.dumps({**body, "served_by": self.node}, default=datetime.isoformat)
            content_type = "application/json"
        data = body.encode()
        headers = [
            *headers,
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("X-Served-By", self.node),
            ("Cache-Control", "no-store"),
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [b"" if method == "HEAD" else data]

    def route(self, method, path, environ):  # noqa: PLR0911 - one return per answer
        allowed = ROUTES.get(path)
        if allowed is None:
            return 404, {"error": f"no such path: {path[:100]}"}, []
        if method not in allowed.split(", "):
            return (
                405,
                {"error": f"{method[:20]} is not allowed; use {allowed}"},
                [("Allow", allowed)],
            )
        if path == "/health":  # what this process knows, without asking a database
            up = {
                k: self.db.hosts[self.db.config[f"{k}_host"]].open_until is None
                for k in ("primary", "replica")
            }
            lag = self.db.replica_lag()[1]
            return 200, {"status": "ok", "databases_up": up, "replica_lag_seconds": lag}, []
        if method == "POST":
            return self.post_message(environ)
        try:
            read = self.db.read_messages(self.limit(environ), read_after(environ))
        except Unavailable as error:
            log.warning("read failed: %s", error)
            return 503, {"error": "no database is reachable for reads"}, RETRY
        if path == "/":
            items = "".join(f"<li>{html.escape(m['text'])}</li>" for m in read.messages)
            page = PAGE.format(node=html.escape(self.node), read_from=read.source, items=items)
            return 200, page, []
        body = {
            "read_from": read.source,
            "replica_lag_seconds": read.lag,
            "stale": read.stale,  # from a lagging replica, because the primary failed
            "messages": read.messages,
        }
        return 200, body, []

    def limit(self, environ):
        for pair in environ.get("QUERY_STRING", "").split("&"):
            value = pair[6:]
            if pair.startswith("limit=") and value.isascii() and value.isdigit():
                return max(1, min(int(value[:4]) if len(value) < 5 else 100, 100))
        return 20

    def post_message(self, environ):
        try:
            text, key = request_text(environ), idempotency_key(environ)
        except BadRequest as error:
            return error.args[0], {"error": error.args[1]}, []
        try:
            written = self.db.write_message(text, self.node, key)
        except Unavailable as error:
            if not isinstance(error, NotTried):  # logged when the breaker opened
                log.warning("write failed: %s", error)
            error = "the primary database is unavailable; nothing was saved"
            return 503, {"error": error, "outcome": "not saved"}, RETRY
        except OutcomeUnknown as error:
            log.warning("write outcome unknown: %s", error)
            error = (
                "the primary stopped answering after the message was sent: it may or may not "
                "be saved. Retry with this Idempotency-Key: it is never stored twice"
            )
            return 503, {"error": error, "outcome": "unknown", "idempotency_key": key}, RETRY
        except KeyReused:
            return 422, {"error": "this Idempotency-Key was used for another text"}, []
        token = str(written.read_after)
        body = {"written_to": "primary", "message": written.message, "read_after": token}
        cookie = f"read_after={token}; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
        headers = [("Set-Cookie", cookie), ("X-Read-After", token)]
        return 201, {**body, "replayed": written.replayed}, headers
