"""What a client sends, checked before the database is asked: the message's JSON body, its
idempotency key, and the read-after token that pins a client's reads to where its last write is
visible. Each refusal is a `BadRequest` with the status and a message that says what to send.
"""

import json
import time
import unicodedata
import uuid

MAX_BODY, MAX_TEXT = 16384, 500  # bytes (as Nginx's client_max_body_size), characters


class BadRequest(Exception):  # (status, message)
    pass


def request_text(environ):
    media, _, charset = environ.get("CONTENT_TYPE", "").lower().partition(";")
    if media.strip() != "application/json" or charset.replace(" ", "") not in ("", "charset=utf-8"):
        raise BadRequest(415, "send the body as Content-Type: application/json")
    length = environ.get("CONTENT_LENGTH") or ""
    if length and not (length.isascii() and length.isdigit()):
        raise BadRequest(400, "Content-Length must be a number")
    # No length (chunked): one byte more than allowed shows a longer body.
    size = int(length) if 0 < len(length) < 10 else MAX_BODY + 1
    data = environ["wsgi.input"].read(size) if size <= MAX_BODY or not length else b""
    if size > MAX_BODY and (length or len(data) > MAX_BODY):
        raise BadRequest(413, f"the body must be at most {MAX_BODY} bytes")
    try:
        document = json.loads(data.decode())
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, nested too deep
        document = None
    text = document.get("text") if isinstance(document, dict) else None
    if not isinstance(text, str):
        raise BadRequest(400, 'send JSON like {"text": "hello"}')
    try:
        text = text.encode().decode().strip()
    except UnicodeError:
        raise BadRequest(400, "text holds an unpaired surrogate (\\ud800-\\udfff)") from None
    kinds = [unicodedata.category(char) for char in text]
    if any(kind == "Cc" and char not in "\t\n\r" for kind, char in zip(kinds, text, strict=True)):
        raise BadRequest(400, "text must not hold control characters")
    if not any(kind[0] in "LMNPS" for kind in kinds):  # letters, marks, digits, signs
        raise BadRequest(400, "text must hold a visible character")
    if len(text) > MAX_TEXT:
        raise BadRequest(400, f"text must be at most {MAX_TEXT} characters, not {len(text)}")
    return text


def idempotency_key(environ):
    # Without one from the client, an unknown outcome returns the new one for the retry.
    key = environ.get("HTTP_IDEMPOTENCY_KEY", uuid.uuid4().hex)
    if not (0 < len(key) <= 64 and all("!" <= char <= "~" for char in key)):
        raise BadRequest(400, "Idempotency-Key must be 1 to 64 visible ASCII characters")
    return key


def read_after(environ):
    values = [environ.get("HTTP_X_READ_AFTER", "")]
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, _, value = part.strip().partition("=")
        values += [value] if name == "read_after" else []
    newest = max((int(v) for v in values if v.isascii() and v.isdigit() and len(v) < 19), default=0)
    # A future (forged) token would pin the client to the primary.
    return newest if 0 < newest < time.time_ns() // 1000 + 5_000_000 else None
