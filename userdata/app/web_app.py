"""Demo app of web-infra: writes go to the MySQL primary, reads to the replica.

How it degrades: README, "The app". Needs Ubuntu's python3-pymysql and python3-boto3 only.
It connects as its own MySQL user, whose password it reads from its own secret; the database
bootstrap (components/functions/app_db_user.py) made that user and the tables, so the app runs
no DDL and has no right to.
"""

import html
import json
import logging
import os
import ssl
import threading
import time
import unicodedata
import uuid
from collections import namedtuple
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from http import HTTPStatus

import pymysql

log = logging.getLogger("web_app")
ACCESS_DENIED, NO_SUCH_TABLE, DUPLICATE_ENTRY = 1045, 1146, 1062
SECRET_REREAD_SECONDS = 1.0  # while passwords are refused
# After the secret could not be read (first boot can beat its policy or the secret itself),
# requests answer 503 at once for this long, then one of them tries again: a worker asks
# Secrets Manager at most once per interval however busy it is.
SECRET_RETRY_SECONDS = 5.0
BREAKER_FAILURES, BREAKER_OPEN_SECONDS = 3, 2.0
# A request that finds every slot of a host taken waits up to SLOT_WAIT_SECONDS for one, but
# only while the oldest call holding a slot is younger than HUNG_AFTER_SECONDS: on a saturated
# machine healthy calls take tens of milliseconds (busy, not hung: when any call older than
# 0.1 s counted as hung, about 1 write in 100 was refused under the benchmark's load); behind a
# call that old the host may hang, and the request does not wait. The wait stays short because
# a waiting request holds one of gunicorn's threads, which /health needs too.
SLOT_WAIT_SECONDS, HUNG_AFTER_SECONDS = 0.1, 0.5
BEAT_SECONDS = 0.5
PING_AFTER_IDLE_SECONDS = 1.0
MAX_BODY, MAX_TEXT = 16384, 500  # bytes (as Nginx's client_max_body_size), characters
DEFAULTS = {
    "port": 3306,
    "connect_timeout_seconds": 1.0,
    "query_timeout_seconds": 1.0,  # each socket read or write
    "max_replica_lag_seconds": 3.0,
    "max_concurrent_queries": 5,  # per server and process: threads are left for /health
}
# Changes (and replicates) nothing while a recent beat exists: every process may try.
BEAT = (
    "UPDATE heartbeat SET ts = UTC_TIMESTAMP(6) "
    "WHERE id = 1 AND ts < UTC_TIMESTAMP(6) - INTERVAL 400000 MICROSECOND"
)
LAG = "SELECT ts, TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) AS lag FROM heartbeat"
INSERT = "INSERT INTO messages (text, written_by, idempotency_key) VALUES (%s, %s, %s)"
# `now` is after the commit: a replica whose heartbeat has reached it has the write.
WRITTEN = "SELECT id, text, written_by, created_at, UTC_TIMESTAMP(6) AS now FROM messages WHERE "
NEWEST = "SELECT id, text, written_by, created_at FROM messages ORDER BY id DESC LIMIT %s"
EPOCH = datetime(1970, 1, 1)

Read = namedtuple("Read", "messages source lag stale")
Written = namedtuple("Written", "message read_after replayed")


class Unavailable(Exception):  # the database did not do it, for certain
    pass


class NotTried(Unavailable):  # not even sent: breaker open, or no slot
    pass


class OutcomeUnknown(Exception):
    pass


class KeyReused(Exception):
    pass


def micros(moment):
    return (moment - EPOCH) // timedelta(microseconds=1)


def code_of(error):
    return error.args[0] if error.args and isinstance(error.args[0], int) else 0


def lost_connection(error):
    """The connection failed, not the statement: did the server run it? Unknown."""
    return not 0 < code_of(error) < 2000 and not code_of(error) >= 3000  # CR_* or no code


def timed_out(error):
    return isinstance(error.__cause__ or error.__context__, TimeoutError)


def failed(host, error):
    return Unavailable(f"{host}: {error.args[-1] if error.args else error!r}")


def close(connection):
    with suppress(Exception):  # a broken connection may fail to say goodbye
        connection.close()


class FileCredentials:
    """{"username", "password"} from a file (the local lab)."""

    def __init__(self, path):
        self.path = path

    def get(self):
        with open(self.path) as f:
            secret = json.load(f)
        return secret["username"], secret["password"]

    def invalidate(self):
        pass


class SecretsManagerSecret:
    """The app's own secret, {"username", "password"}, by the name its config gives."""

    def __init__(self, region, secret_id, clock=time.monotonic):
        import boto3  # noqa: PLC0415 - only the AWS source needs it
        from botocore.config import Config  # noqa: PLC0415

        # Not boto3's default minute: a request thread waits.
        config = Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 2})
        self.secrets = boto3.client("secretsmanager", region_name=region, config=config)
        self.secret_id, self.clock = secret_id, clock
        self.lock = threading.Lock()
        self.cached = None
        self.read_at = 0.0
        self.failed_at = None

    def get(self):
        with self.lock:
            if self.cached is None:
                if self.failed_at is not None and (
                    self.clock() - self.failed_at < SECRET_RETRY_SECONDS
                ):
                    raise Unavailable("the DB secret could not be read; trying again soon")
                try:
                    value = self.secrets.get_secret_value(SecretId=self.secret_id)
                    secret = json.loads(value["SecretString"])
                    self.cached = secret["username"], secret["password"]
                except Exception as error:
                    # Not there yet, or not readable yet: a later request tries again.
                    self.failed_at = self.clock()
                    raise Unavailable(
                        f"cannot read the DB secret: {type(error).__name__}"
                    ) from None
                self.read_at, self.failed_at = self.clock(), None
            return self.cached

    def invalidate(self):
        with self.lock:
            if self.clock() - self.read_at >= SECRET_REREAD_SECONDS:
                self.cached = None


def credentials_from(config):
    if config["source"] == "file":
        return FileCredentials(config["path"])
    if config["source"] == "secrets-manager":
        return SecretsManagerSecret(config["region"], config["secret_id"])
    raise ValueError(f"unknown credentials source {config['source']!r}")


class Host:
    """One server: idle connections, a bulkhead (`slots` request threads; another waits
    only while their calls are young: busy, not hung) and a breaker, which only the upkeep
    thread probes once open, so that no request waits on a hung host."""

    def __init__(self, name, slots, clock):
        self.name, self.clock = name, clock
        self.slots, self.pool_size = threading.BoundedSemaphore(slots), slots + 1
        self.lock = threading.Lock()
        self.calls = []  # when each call holding a slot started
        self.idle = []  # (connection, when it was given back), newest last
        self.failed, self.open_until, self.probing = 0, None, False

    def enter(self, probe):
        with self.lock:
            if self.open_until is not None:
                if not (probe and not self.probing and self.clock() >= self.open_until):
                    raise NotTried(f"{self.name} failed repeatedly and is skipped for now")
                self.probing = True
            young = self.calls and self.clock() - min(self.calls) < HUNG_AFTER_SECONDS
        if probe:
            return None
        if not self.slots.acquire(blocking=False) and not (
            young and self.slots.acquire(timeout=SLOT_WAIT_SECONDS)
        ):
            raise NotTried(f"{self.name} is busy with slow calls")
        with self.lock:
            self.calls.append(self.clock())
            return self.calls[-1]

    def leave(self, slot, ok):
        with self.lock:
            self.probing = False
            if slot is not None:
                self.calls.remove(slot)
                self.slots.release()
            if ok:
                if self.open_until is not None:
                    log.warning("%s answers again", self.name)
                self.failed, self.open_until = 0, None
                return
            self.failed += 1
            if self.open_until is None and self.failed >= BREAKER_FAILURES:
                log.warning("%s failed %d times in a row; skipped for now", self.name, self.failed)
            if self.open_until is not None or self.failed >= BREAKER_FAILURES:
                self.open_until = self.clock() + BREAKER_OPEN_SECONDS

    def take(self):
        with self.lock:
            return self.idle.pop() if self.idle else (None, 0.0)

    def give_back(self, connection):
        with self.lock:
            if len(self.idle) < self.pool_size:
                self.idle.append((connection, self.clock()))
                return
        close(connection)


class Database:
    def __init__(self, config, credentials, connect=pymysql.connect, clock=time.monotonic):
        self.config = c = {**DEFAULTS, **config}
        self.credentials, self.connect, self.clock = credentials, connect, clock
        self.primary, self.replica = c["primary_host"], c["replica_host"]
        self.hosts = {
            h: Host(h, c["max_concurrent_queries"], clock) for h in (self.primary, self.replica)
        }
        self.lock = threading.Lock()
        self.tls = None
        self.replica_beat = (None, 0.0, 0.0)  # (its heartbeat in µs, lag in s, measured at)

    def _tls(self):
        # One per process; it checks the chain, not the name (we connect through an alias).
        with self.lock:
            if self.tls is None:
                self.tls = ssl.create_default_context(cafile=self.config["tls_ca_file"])
                self.tls.check_hostname = False
            return self.tls

    def _open(self, host):
        c = self.config
        options = {
            "host": host,
            "port": int(c["port"]),
            "database": c["name"],
            "connect_timeout": c["connect_timeout_seconds"],
            "read_timeout": c["query_timeout_seconds"],
            "write_timeout": c["query_timeout_seconds"],
            "autocommit": True,
            "charset": "utf8mb4",
            "cursorclass": pymysql.cursors.DictCursor,
        }
        for attempt in (1, 2):
            try:
                if c.get("tls_ca_file"):
                    options["ssl"] = self._tls()
                user, password = self.credentials.get()
                return self.connect(user=user, password=password, **options)
            except OSError as error:  # e.g. no CA bundle yet, or TLS failed
                raise Unavailable(f"{host}: {error}") from None
            except pymysql.MySQLError as error:
                if code_of(error) != ACCESS_DENIED or attempt == 2:
                    raise failed(host, error) from None
                log.warning("%s refused the credentials; reading the secret again", host)
                self.credentials.invalidate()
        raise AssertionError("unreachable")

    def _lease(self, host, fresh, ping):
        while not fresh:
            connection, since = self.hosts[host].take()
            if connection is None:
                break
            if not ping and self.clock() - since < PING_AFTER_IDLE_SECONDS:
                return connection, True
            try:
                connection.ping(reconnect=False)
                return connection, True
            except pymysql.MySQLError as error:
                close(connection)
                if timed_out(error):  # a hung host: a new one would hang too
                    raise failed(host, error) from error
        return self._open(host), False

    @contextmanager
    def _connected(self, host, probe=False, fresh=False, ping=False):
        """(connection, reused); a lost one is closed, its error left to the caller."""
        server = self.hosts[host]
        slot, ok = server.enter(probe), False
        try:
            connection, reused = self._lease(host, fresh, ping)
            try:
                yield connection, reused
                ok = True
            except pymysql.MySQLError as error:
                ok = not lost_connection(error)  # else the server answered
                raise
            finally:
                if ok and connection.open:
                    server.give_back(connection)
                else:
                    close(connection)
        finally:
            server.leave(slot, ok)

    def _select(self, host, sql, params=(), probe=False):
        # A dead pooled connection is replaced once: a read may be repeated.
        for fresh in (False, True):
            reused = False
            try:
                with (
                    self._connected(host, probe, fresh) as (connection, reused),
                    connection.cursor() as cursor,
                ):
                    cursor.execute(sql, params)
                    return cursor.fetchall()
            except pymysql.MySQLError as error:
                if code_of(error) == NO_SUCH_TABLE:
                    return []  # the first write creates it
                if not (reused and lost_connection(error) and not timed_out(error)):
                    raise failed(host, error) from error
        raise AssertionError("unreachable")

    def maintain(self):
        with (
            suppress(Unavailable, pymysql.MySQLError),
            self._connected(self.primary, probe=True) as (connection, _),
            connection.cursor() as cursor,
        ):
            cursor.execute(BEAT)
        with suppress(Unavailable):
            for row in self._select(self.replica, LAG, probe=True):
                self.replica_beat = (micros(row["ts"]), max(0, row["lag"]) / 1e6, self.clock())

    def start_upkeep(self):
        def loop():
            while True:
                started = self.clock()
                try:
                    self.maintain()
                except Exception:
                    log.exception("upkeep failed")
                time.sleep(max(0.05, BEAT_SECONDS - self.clock() + started))

        threading.Thread(target=loop, name="db-upkeep", daemon=True).start()

    def replica_lag(self):
        """(the replica's heartbeat in µs, its lag in s as measured plus the time since)"""
        beat, lag, measured_at = self.replica_beat
        return (None, None) if beat is None else (beat, lag + self.clock() - measured_at)

    def read_messages(self, limit, read_after=None):
        """From the replica if fresh and it has the client's last write, else the primary;
        from the other one when that fails."""
        beat, lag = self.replica_lag()
        fresh = lag is not None and lag <= self.config["max_replica_lag_seconds"]
        fresh = fresh and (read_after is None or beat >= read_after)
        failures = []
        for source in ("replica", "primary") if fresh else ("primary", "replica"):
            try:
                rows = self._select(self.config[f"{source}_host"], NEWEST, (limit,))
            except Unavailable as error:
                failures.append(str(error))
                continue
            return Read(rows, source, lag, stale=source == "replica" and not fresh)
        raise Unavailable("; ".join(failures))

    def write_message(self, text, written_by, key):
        """Store once per key. Unavailable: nothing stored, for certain. OutcomeUnknown:
        the connection died after the INSERT was sent."""
        sent = replayed = False
        message_id = None
        try:
            # Pinged: one that died idle is replaced before the INSERT is sent.
            with (
                self._connected(self.primary, ping=True) as (connection, _),
                connection.cursor() as cur,
            ):
                sent = True
                try:
                    cur.execute(INSERT, (text, written_by, key))
                    message_id = cur.lastrowid
                    cur.execute(WRITTEN + "id = %s", (message_id,))
                except pymysql.MySQLError as error:
                    if code_of(error) != DUPLICATE_ENTRY:
                        raise
                    replayed = True  # answer with the message stored with this key
                    cur.execute(WRITTEN + "idempotency_key = %s", (key,))
                row = cur.fetchone()
        except pymysql.MySQLError as error:
            if message_id is not None:
                # Stored for certain, not read back: our clock plus a second as token.
                log.warning("message %s stored, not read back: %s", message_id, error)
                row = {"id": message_id, "text": text, "written_by": written_by, "created_at": None}
                return Written(row, time.time_ns() // 1000 + 1_000_000, False)
            if sent and lost_connection(error):
                raise OutcomeUnknown(str(failed(self.primary, error))) from error
            raise failed(self.primary, error) from error
        if replayed and (row is None or row["text"] != text):
            raise KeyReused
        return Written(row, micros(row.pop("now")), replayed)


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


def create_app(config_path):
    with open(config_path) as f:
        config = json.load(f)
    database = Database(config["database"], credentials_from(config["credentials"]))
    return App(config["node_name"], database)


if os.environ.get("WEB_APP_CONFIG"):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    application = create_app(os.environ["WEB_APP_CONFIG"])
    # Each gunicorn worker imports this after the fork: one upkeep thread each.
    application.db.start_upkeep()
