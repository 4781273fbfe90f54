"""The HTTP checks of `tools.verify`, through the site's URL: health, round robin over every
node, and a message written and read back (replication to the replica is asynchronous)."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from tools.verify.outputs import Outputs
from tools.verify.report import Check

MAX_BODY_BYTES = 1 << 20
USER_AGENT = "web-infra-verify/1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    served_by: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpFailure(Exception):
    """No HTTP response at all: refused, reset, timed out, bad URL."""


def http_request(
    method: str, url: str, *, timeout: float, payload: object | None = None
) -> HttpResponse:
    """One request with a short timeout; any HTTP status is a response, not an exception."""
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - scheme checked in parse_outputs
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpResponse(
                response.status, response.headers.get("X-Served-By"), response.read(MAX_BODY_BYTES)
            )
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(
                error.code, error.headers.get("X-Served-By"), error.read(MAX_BODY_BYTES)
            )
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise HttpFailure(str(reason) or type(error).__name__) from None


def check_http(outputs: Outputs, *, timeout: float, read_back_seconds: float) -> list[Check]:
    """Health, round robin over every node, and a write read back through the load balancer."""
    return [
        check_health(outputs.url, timeout),
        check_round_robin(outputs.url, outputs.web_node_names, timeout),
        check_write_read(outputs.url, timeout, read_back_seconds),
    ]


def check_health(url: str, timeout: float) -> Check:
    expected = "200"
    try:
        response = http_request("GET", f"{url}/health", timeout=timeout)
    except HttpFailure as error:
        return Check("http health", expected, f"no answer: {error}", False)
    by = f" from {response.served_by}" if response.served_by else ""
    return Check("http health", expected, f"{response.status}{by}", response.status == 200)


def check_round_robin(url: str, nodes: Sequence[str], timeout: float) -> Check:
    """2*N GETs: all 200 with X-Served-By, every node answers, none twice in a row."""
    count = 2 * len(nodes)
    names = ", ".join(nodes) if len(nodes) <= 3 else f"{nodes[0]}..{nodes[-1]}"
    expected = f"{count} GETs: each of {names} answers, none twice in a row"
    answers: list[str | None] = []
    seen: list[str] = []
    for _ in range(count):
        try:
            response = http_request("GET", f"{url}/api/messages", timeout=timeout)
        except HttpFailure as error:
            seen.append(f"({error})")
            answers.append(None)
            continue
        node = response.served_by
        note = "" if response.status == 200 else f"[{response.status}]"
        try:
            body_node = response.json().get("served_by")
        except (ValueError, AttributeError):
            body_node = None
        if node is not None and body_node not in (None, node):
            note += f"[body: {body_node}]"
        seen.append(f"{node or '?'}{note}")
        answers.append(node if response.status == 200 and not note else None)
    problems: list[str] = [] if nodes else ["no web nodes in the outputs"]
    if None in answers:
        problems.append("not every GET answered 200 with X-Served-By")
    missing = [node for node in nodes if node not in answers]
    if missing:
        problems.append(f"never answered: {', '.join(missing)}")
    strangers = sorted({a for a in answers if a is not None and a not in nodes})
    if strangers:
        problems.append(f"unknown: {', '.join(strangers)}")
    repeats = [
        str(i)
        for i, (a, b) in enumerate(itertools.pairwise(answers), start=2)
        if a is not None and a == b
    ]
    if repeats:
        problems.append(f"same node as the GET before at GET {', '.join(repeats)}")
    found = " ".join(seen) + (f" ({'; '.join(problems)})" if problems else "")
    return Check("http round robin", expected, found, not problems)


def _message_of(body: Any) -> Mapping[str, Any] | None:
    """The new message in a POST answer: the body itself or its `message` member."""
    if isinstance(body, dict):
        if "id" in body and "text" in body:
            return body
        inner = body.get("message")
        if isinstance(inner, dict) and "id" in inner and "text" in inner:
            return inner
    return None


def check_write_read(url: str, timeout: float, read_back_seconds: float) -> Check:
    """POST a message, then GET until it is listed (replication lag) or time runs out."""
    expected = f"POST 201 with id; listed by GET within {read_back_seconds:g} s"
    name = "http write, read back"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = f"tools.verify {stamp} {uuid.uuid4().hex[:12]}"
    try:
        response = http_request(
            "POST", f"{url}/api/messages", timeout=timeout, payload={"text": text}
        )
    except HttpFailure as error:
        return Check(name, expected, f"POST: no answer: {error}", False)
    try:
        message = _message_of(response.json())
    except ValueError:
        message = None
    if response.status != 201 or message is None:
        return Check(name, expected, f"POST {response.status}, no message with id in body", False)
    message_id = message["id"]
    found = f"POST 201 id={message_id}"
    started = time.monotonic()
    last = "no GET answered"
    while True:
        try:
            page = http_request("GET", f"{url}/api/messages?limit=100", timeout=timeout)
            body = page.json()
            listed = body.get("messages") if isinstance(body, dict) else None
            listed = listed if isinstance(listed, list) else []
            source = body.get("read_from", "?") if isinstance(body, dict) else "?"
            last = f"GET {page.status} from {page.served_by or '?'} ({source})"
            if page.status == 200 and any(
                isinstance(m, dict)
                and str(m.get("id")) == str(message_id)
                and m.get("text") == text
                for m in listed
            ):
                waited = time.monotonic() - started
                return Check(name, expected, f"{found}; read after {waited:.1f} s, {last}", True)
        except (HttpFailure, ValueError) as error:
            last = f"GET failed: {error}"
        if time.monotonic() - started >= read_back_seconds:
            break
        time.sleep(min(0.2, read_back_seconds / 10))
    return Check(
        name, expected, f"{found}; not listed after {read_back_seconds:g} s, {last}", False
    )
