"""Demo app of web-infra: writes go to the MySQL primary, reads to the replica.

It degrades instead of failing: see "How the app degrades" in the README. Needs only
Ubuntu's python3-pymysql and python3-boto3; runs under gunicorn. Config: $WEB_APP_CONFIG.
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
ACCESS_DENIED, NO_SUCH_TABLE = 1045, 1146
DUPLICATE_COLUMN, DUPLICATE_KEY_NAME, DUPLICATE_ENTRY = 1060, 1061, 1062
SECRET_REREAD_SECONDS = 1.0  # at most one secret read a second while passwords are refused
MAX_BODY = 16384  # bytes, as Nginx's client_max_body_size
MAX_TEXT = 500
COOKIE = "read_after"
DEFAULTS = {
    "port": 3306,
    "connect_timeout_seconds": 1.0,
    "query_timeout_seconds": 1.0,  # each socket read or write
    "max_replica_lag_seconds": 3.0,
    # Per server and process: both together stay below gunicorn's threads, so threads are
    # always left for /health, however slow the databases are.
    "max_concurrent_queries": 3,
    "breaker_failures": 3,
    "breaker_open_seconds": 2.0,
    "heartbeat_seconds": 0.5,
    "ping_after_idle_seconds": 1.0,
}
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  text VARCHAR(500) NOT NULL,
  written_by VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  idempotency_key VARCHAR(64) NULL,
  UNIQUE KEY idempotency_key (idempotency_key)) CHARACTER SET utf8mb4""",
    "CREATE TABLE IF NOT EXISTS heartbeat (id TINYINT PRIMARY KEY, ts DATETIME(6) NOT NULL)",
    "INSERT IGNORE INTO heartbeat VALUES (1, UTC_TIMESTAMP(6))",
)
# For tables made before idempotency keys; errors saying it exists are expected.
MIGRATIONS = (
    "ALTER TABLE messages ADD COLUMN idempotency_key VARCHAR(64) NULL",
    "ALTER TABLE messages ADD UNIQUE KEY idempotency_key (idempotency_key)",
)
# Changes (and replicates) nothing while a recent beat exists, so every process may try.
BEAT = (
    "UPDATE heartbeat SET ts = UTC_TIMESTAMP(6) "
    "WHERE id = 1 AND ts < UTC_TIMESTAMP(6) - INTERVAL %s MICROSECOND"
)
LAG = "SELECT ts, TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) AS lag FROM heartbeat"
INSERT = "INSERT INTO messages (text, written_by, idempotency_key) VALUES (%s, %s, %s)"
# `now` is read after the commit: a replica whose heartbeat has reached it has the write.
WRITTEN = "SELECT id, text, written_by, created_at, UTC_TIMESTAMP(6) AS now FROM messages WHERE "
NEWEST = "SELECT id, text, written_by, created_at FROM messages ORDER BY id DESC LIMIT %s"
EPOCH = datetime(1970, 1, 1)

Read = namedtuple("Read", "messages source lag stale")
Written = namedtuple("Written", "message read_after replayed")


class Unavailable(Exception):
    """The database did not do it, for certain."""


class NotTried(Unavailable):
    """The host's breaker is open: nothing was sent."""


class OutcomeUnknown(Exception):
    """The connection died after the write was sent."""


class KeyReused(Exception):
    """An Idempotency-Key came back with another text."""


def micros(moment):
    return (moment - EPOCH) // timedelta(microseconds=1)


def code_of(error):
    return error.args[0] if error.args and isinstance(error.args[0], int) else 0


def lost_connection(error):
    """The connection failed, not the statement: the server may or may not have run it."""
    return code_of(error) == 0 or 2000 <= code_of(error) < 3000  # CR_* client errors


def timed_out(error):
    return isinstance(error.__cause__ or error.__context__, TimeoutError)


def describe(error):
    return f"{error.args[-1] if error.args else type(error).__name__}"


def rounded(seconds):
    return None if seconds is None else round(seconds, 3)


def close(connection):
    with suppress(Exception):  # a broken connection may fail to say goodbye
        connection.close()


class FileCredentials:
    """{"username", "password"} from a JSON file (the local lab)."""

    def __init__(self, path):
        self.path = path

    def get(self):
        with open(self.path) as f:
            secret = json.load(f)
        return secret["username"], secret["password"]

    def invalidate(self):
        pass


class RdsManagedSecret:
    """The master user secret RDS keeps in Secrets Manager, found from the DB identifier."""

    def __init__(self, region, db_instance_identifier):
        import boto3  # noqa: PLC0415 - only the AWS source needs it
        from botocore.config import Config  # noqa: PLC0415

        # A slow AWS API must not hold a request thread for boto3's default minute.
        config = Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 2})
        self.rds = boto3.client("rds", region_name=region, config=config)
        self.secrets = boto3.client("secretsmanager", region_name=region, config=config)
        self.db_id = db_instance_identifier
        self.lock = threading.Lock()
        self.cached = None
        self.read_at = 0.0

    def get(self):
        with self.lock:
            if self.cached is None:
                try:
                    db = self.rds.describe_db_instances(DBInstanceIdentifier=self.db_id)
                    arn = db["DBInstances"][0]["MasterUserSecret"]["SecretArn"]
                    value = self.secrets.get_secret_value(SecretId=arn)["SecretString"]
                    secret = json.loads(value)
                except Exception as error:
                    # First boot can beat IAM and RDS; the next request tries again.
                    raise Unavailable(
                        f"cannot read the DB secret: {type(error).__name__}"
                    ) from None
                self.cached = secret["username"], secret["password"]
                self.read_at = time.monotonic()
            return self.cached

    def invalidate(self):
        with self.lock:
            if time.monotonic() - self.read_at >= SECRET_REREAD_SECONDS:
                self.cached = None


def credentials_from(config):
    if config["source"] == "file":
        return FileCredentials(config["path"])
    if config["source"] == "rds-managed-secret":
        return RdsManagedSecret(config["region"], config["db_instance_identifier"])
    raise ValueError(f"unknown credentials source {config['source']!r}")


class Host:
    """One server: its idle connections, its bulkhead and its circuit breaker.

    At most `max_concurrent_queries` request threads use the host at once; another one waits
    for its turn only while those calls are young (a busy host), not while they hang. After
    `failures` failures in a row the breaker opens: requests skip the host. Once
    `open_seconds` have passed, a probe may try it; only the upkeep thread probes, so no
    user's request waits on a host known to hang.
    """

    def __init__(self, name, config, clock):
        self.name, self.clock = name, clock
        self.failures, self.open_seconds = (
            config["breaker_failures"],
            config["breaker_open_seconds"],
        )
        self.pool_size = config["max_concurrent_queries"] + 1  # and the upkeep thread
        self.slots = threading.BoundedSemaphore(config["max_concurrent_queries"])
        self.calls = []  # when each call holding a slot started
        self.lock = threading.Lock()
        self.idle = []  # (connection, when it was given back), newest last
        self.failed, self.open_until, self.probing = 0, None, False

    @property
    def up(self):
        return self.open_until is None

    def allow(self, probe):
        with self.lock:
            if self.open_until is None:
                return True
            if probe and not self.probing and self.clock() >= self.open_until:
                self.probing = True
                return True
            return False

    def enter(self):
        """A slot (its start time), or None."""
        if not self.slots.acquire(blocking=False):
            with self.lock:
                young = self.calls and self.clock() - min(self.calls) < 0.1
            if not (young and self.slots.acquire(timeout=0.1)):
                return None
        with self.lock:
            self.calls.append(self.clock())
            return self.calls[-1]

    def leave(self, started):
        with self.lock:
            self.calls.remove(started)
        self.slots.release()

    def record(self, ok):
        with self.lock:
            self.probing = False
            if ok:
                if self.open_until is not None:
                    log.warning("%s answers again", self.name)
                self.failed, self.open_until = 0, None
                return
            self.failed += 1
            if self.open_until is None and self.failed >= self.failures:
                log.warning("%s failed %d times in a row; skipped for now", self.name, self.failed)
            if self.open_until is not None or self.failed >= self.failures:
                self.open_until = self.clock() + self.open_seconds

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
    """Writes to the primary; reads from the replica while it is fresh enough."""

    def __init__(self, config, credentials, connect=pymysql.connect, clock=time.monotonic):
        self.config = c = {**DEFAULTS, **config}
        self.credentials, self.connect, self.clock = credentials, connect, clock
        self.primary, self.replica = c["primary_host"], c["replica_host"]
        self.hosts = {h: Host(h, c, clock) for h in (self.primary, self.replica)}
        self.lock = threading.Lock()
        self.tls = None
        self.schema_ready = False
        self.replica_beat = (None, 0.0, 0.0)  # (its heartbeat in µs, lag in s, measured at)

    def _tls(self):
        """One context per process. It verifies the chain, not the name: the app connects
        through the private zone's alias, not the instance's RDS name."""
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
            except OSError as error:  # e.g. the RDS CA bundle missing or a TLS failure
                raise Unavailable(f"{host}: {error}") from None
            except pymysql.MySQLError as error:
                if code_of(error) == ACCESS_DENIED and attempt == 1:
                    log.warning("%s refused the credentials; reading the secret again", host)
                    self.credentials.invalidate()
                    continue
                raise Unavailable(f"{host}: {describe(error)}") from None
        raise AssertionError("unreachable")

    def _lease(self, host, fresh, ping):
        """(connection, reused): a pooled one, pinged if it idled, or a new one."""
        while not fresh:
            connection, since = self.hosts[host].take()
            if connection is None:
                break
            if not ping and self.clock() - since < self.config["ping_after_idle_seconds"]:
                return connection, True
            try:
                connection.ping(reconnect=False)
                return connection, True
            except pymysql.MySQLError as error:
                close(connection)
                if timed_out(error):  # the host hangs: a new connection would hang too
                    raise Unavailable(f"{host}: {describe(error)}") from error
        return self._open(host), False

    @contextmanager
    def _connected(self, host, probe=False, fresh=False, ping=False):
        """(connection, reused) for one operation; the breaker learns how it went. A lost
        connection is closed and its error passed on: only the caller knows what it means."""
        server = self.hosts[host]
        if not server.allow(probe):
            raise NotTried(f"{host} failed repeatedly and is skipped for now")
        # The upkeep thread is no request thread: it needs no slot.
        slot = None if probe else server.enter()
        if slot is None and not probe:
            raise NotTried(f"{host} is busy with slow calls")
        ok = False
        try:
            connection, reused = self._lease(host, fresh, ping)
            try:
                yield connection, reused
            except pymysql.MySQLError as error:
                ok = not lost_connection(error)  # else the server answered the statement
                if ok and connection.open:
                    server.give_back(connection)
                else:
                    close(connection)
                raise
            except BaseException:
                close(connection)
                raise
            ok = True
            server.give_back(connection)
        finally:
            server.record(ok)
            if slot is not None:
                server.leave(slot)

    def _select(self, host, sql, params=(), probe=False):
        """A read's rows; a pooled connection found dead is replaced once (reads may)."""
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
                    return []  # nothing written yet: the first write creates the tables
                if not (reused and lost_connection(error) and not timed_out(error)):
                    raise Unavailable(f"{host}: {describe(error)}") from error
        raise AssertionError("unreachable")

    def _execute(self, statements, probe):
        with self._connected(self.primary, probe) as (connection, _), connection.cursor() as cur:
            for sql, params, expected in statements:
                try:
                    cur.execute(sql, params)
                except pymysql.MySQLError as error:
                    if code_of(error) not in expected:
                        raise

    def ensure_schema(self, probe=False):
        """Create or migrate the tables: cheap to repeat, safe for many nodes at once."""
        if not self.schema_ready:
            try:
                self._execute(
                    [(sql, (), ()) for sql in SCHEMA]
                    + [(sql, (), (DUPLICATE_COLUMN, DUPLICATE_KEY_NAME)) for sql in MIGRATIONS],
                    probe,
                )
            except pymysql.MySQLError as error:
                raise Unavailable(f"{self.primary}: {describe(error)}") from error
            self.schema_ready = True

    def maintain(self):
        """One round of upkeep: schema, a heartbeat on the primary, the replica's lag."""
        try:
            self.ensure_schema(probe=True)
            gap = int(self.config["heartbeat_seconds"] * 800_000)  # µs: 80 % of the period
            self._execute([(BEAT, (gap,), ())], probe=True)
        except (Unavailable, pymysql.MySQLError) as error:
            log.debug("heartbeat: %s", describe(error))
        try:
            rows = self._select(self.replica, LAG, probe=True)
        except Unavailable as error:
            log.debug("lag: %s", describe(error))
            rows = []
        if rows:
            self.replica_beat = (micros(rows[0]["ts"]), max(0, rows[0]["lag"]) / 1e6, self.clock())

    def start_upkeep(self):
        def loop():
            while True:
                started = self.clock()
                try:
                    self.maintain()
                except Exception:
                    log.exception("upkeep failed")
                time.sleep(max(0.05, self.config["heartbeat_seconds"] - self.clock() + started))

        threading.Thread(target=loop, name="db-upkeep", daemon=True).start()

    def replica_lag(self):
        """(the replica's heartbeat in µs, an upper bound of its lag in s): the lag measured,
        plus the time since; (None, None) before a first measurement."""
        beat, lag, measured_at = self.replica_beat
        if beat is None:
            return None, None
        return beat, lag + max(0.0, self.clock() - measured_at)

    def health(self):
        """What this process knows, without asking a database."""
        roles = {"primary": self.primary, "replica": self.replica}
        state = {role: "up" if self.hosts[h].up else "failing" for role, h in roles.items()}
        return {"status": "ok", **state, "replica_lag_seconds": rounded(self.replica_lag()[1])}

    def read_messages(self, limit, read_after=None):
        """Newest first, from the replica if it is fresh and has the client's last write,
        else from the primary; from the other one when the first fails."""
        beat, lag = self.replica_lag()
        fresh = lag is not None and lag <= self.config["max_replica_lag_seconds"]
        fresh = fresh and (read_after is None or beat >= read_after)
        failures = []
        for source in ("replica", "primary") if fresh else ("primary", "replica"):
            host = self.replica if source == "replica" else self.primary
            try:
                rows = self._select(host, NEWEST, (limit,))
            except Unavailable as error:
                failures.append(str(error))
                continue
            return Read(rows, source, lag, stale=source == "replica" and not fresh)
        raise Unavailable("; ".join(failures))

    def write_message(self, text, written_by, key):
        """Store a message once per key. Raises Unavailable when nothing was stored for
        certain, OutcomeUnknown when the connection died after the INSERT was sent."""
        self.ensure_schema()
        sent = replayed = False
        message_id = None
        try:
            # Pinged first, so that a connection that died while idle is replaced before the
            # INSERT is sent, rather than making its outcome unknown.
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
                    replayed = True  # stored before with this key: answer with that message
                    cur.execute(WRITTEN + "idempotency_key = %s", (key,))
                row = cur.fetchone()
        except pymysql.MySQLError as error:
            if message_id is not None:
                # Stored for certain, not read back: the token is our clock plus a second,
                # erring towards the primary.
                log.warning("message %s stored, not read back: %s", message_id, describe(error))
                row = {"id": message_id, "text": text, "written_by": written_by, "created_at": None}
                return Written(row, time.time_ns() // 1000 + 1_000_000, False)
            if sent and lost_connection(error):
                raise OutcomeUnknown(f"{self.primary}: {describe(error)}") from error
            raise Unavailable(f"{self.primary}: {describe(error)}") from error
        if replayed and (row is None or row["text"] != text):
            raise KeyReused
        return Written(row, micros(row.pop("now")), replayed)


class BadRequest(Exception):
    """(status, message)"""


def request_text(environ):
    """The text a POST carries, or BadRequest saying what is wrong."""
    media, _, charset = environ.get("CONTENT_TYPE", "").lower().partition(";")
    if media.strip() != "application/json" or charset.replace(" ", "") not in ("", "charset=utf-8"):
        raise BadRequest(415, "send the body as Content-Type: application/json")
    length = environ.get("CONTENT_LENGTH") or ""
    if length and not (length.isascii() and length.isdigit()):
        raise BadRequest(400, "Content-Length must be a number")
    too_large = BadRequest(413, f"the body must be at most {MAX_BODY} bytes")
    if len(length) > 9 or (length and int(length) > MAX_BODY):
        raise too_large
    # Without a length (a chunked body), read one byte more than allowed to see a longer one.
    data = environ["wsgi.input"].read(int(length) if length else MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise too_large
    try:
        document = json.loads(data.decode())
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, or nested too deep
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
    """The client's Idempotency-Key, or a new one, so that even a client that sent none
    can retry an unknown outcome safely with the key the answer gives."""
    key = environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return uuid.uuid4().hex
    if not (0 < len(key) <= 64 and all("!" <= char <= "~" for char in key)):
        raise BadRequest(400, "Idempotency-Key must be 1 to 64 visible ASCII characters")
    return key


def read_after(environ):
    """The token of the client's last write, from X-Read-After or the cookie."""
    values = [environ.get("HTTP_X_READ_AFTER", "")]
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, _, value = part.strip().partition("=")
        values += [value] if name == COOKIE else []
    newest = max((int(v) for v in values if v.isascii() and v.isdigit() and len(v) < 19), default=0)
    # A token from the future (forged, or a skewed clock) would pin the client to the primary.
    return newest if 0 < newest < time.time_ns() // 1000 + 5_000_000 else None


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>web-infra</title></head>
<body><h1>Served by {node}</h1><p>Read from the {read_from}. Reload to watch round robin.</p>
<form id="f"><input name="text" maxlength="500" required><button>Write</button></form>
<ul>{items}</ul><script>document.getElementById("f").onsubmit=async e=>{{e.preventDefault();
await fetch("/api/messages",{{method:"POST",headers:{{"Content-Type":"application/json"}},
body:JSON.stringify({{text:e.target.text.value}})}});location.reload()}}</script></body></html>"""
ROUTES = {
    "/health": ("GET", "HEAD"),
    "/": ("GET", "HEAD"),
    "/api/messages": ("GET", "HEAD", "POST"),
}
RETRY = [("Retry-After", "1")]


class App:
    """The WSGI application."""

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
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                ("X-Served-By", self.node),
                ("Cache-Control", "no-store"),
                *headers,
            ],
        )
        return [b"" if method == "HEAD" else data]

    def route(self, method, path, environ):
        if path not in ROUTES:
            return 404, {"error": f"no such path: {path[:100]}"}, []
        if method not in ROUTES[path]:
            allow = ", ".join(ROUTES[path])
            return 405, {"error": f"{method[:20]} is not allowed; use {allow}"}, [("Allow", allow)]
        if path == "/health":
            return 200, self.db.health(), []
        if method == "POST":
            try:
                text, key = request_text(environ), idempotency_key(environ)
            except BadRequest as error:
                return error.args[0], {"error": error.args[1]}, []
        if method == "POST":
            return self.post_message(text, key)
        return self.get_messages(path, environ)

    def get_messages(self, path, environ):
        try:
            read = self.db.read_messages(self.limit(environ), read_after(environ))
        except Unavailable as error:
            log.warning("read failed: %s", error)
            return 503, {"error": "no database is reachable for reads"}, RETRY
        if path == "/":
            items = "".join(f"<li>{html.escape(m['text'])}</li>" for m in read.messages)
            return (
                200,
                PAGE.format(node=html.escape(self.node), read_from=read.source, items=items),
                [],
            )
        body = {
            "read_from": read.source,
            "replica_lag_seconds": rounded(read.lag),
            "stale": read.stale,  # from a lagging replica, because the primary failed
            "messages": read.messages,
        }
        return 200, body, []

    def limit(self, environ):
        for pair in environ.get("QUERY_STRING", "").split("&"):
            value = pair[6:]
            if pair.startswith("limit=") and value.isascii() and value.isdigit():
                return max(1, min(int(value) if len(value) < 9 else 100, 100))
        return 20

    def post_message(self, text, key):
        try:
            written = self.db.write_message(text, self.node, key)
        except Unavailable as error:
            if not isinstance(error, NotTried):  # an open breaker was logged when it opened
                log.warning("write failed: %s", error)
            error = "the primary database is unavailable; nothing was saved"
            return 503, {"error": error, "outcome": "not saved"}, RETRY
        except OutcomeUnknown as error:
            log.warning("write outcome unknown: %s", error)
            error = (
                "the primary stopped answering after the message was sent, so it may or may "
                "not be saved: retry with this Idempotency-Key, which never stores it twice"
            )
            return 503, {"error": error, "outcome": "unknown", "idempotency_key": key}, RETRY
        except KeyReused:
            return 422, {"error": "this Idempotency-Key was used for another text"}, []
        token = str(written.read_after)
        body = {
            "written_to": "primary",
            "message": written.message,
            "replayed": written.replayed,
            "read_after": token,
        }
        cookie = f"{COOKIE}={token}; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
        return 201, body, [("Set-Cookie", cookie), ("X-Read-After", token)]


def create_app(config_path):
    with open(config_path) as f:
        config = json.load(f)
    database = Database(config["database"], credentials_from(config["credentials"]))
    return App(config["node_name"], database)


if os.environ.get("WEB_APP_CONFIG"):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    application = create_app(os.environ["WEB_APP_CONFIG"])
    # Each gunicorn worker imports this after the fork, so each has its own upkeep thread.
    application.db.start_upkeep()
