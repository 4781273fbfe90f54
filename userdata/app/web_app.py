"""Demo app of web-infra: writes go to the MySQL primary, reads to the replica.

Reads fall back to the primary while the replica is unreachable. The DB password is read from
the RDS-managed secret and read again when MySQL refuses it (RDS rotates it). Runs under
gunicorn; needs only Ubuntu's python3-pymysql and python3-boto3. Config: $WEB_APP_CONFIG.
"""

import html
import json
import logging
import os
import threading
import time

import pymysql

log = logging.getLogger("web_app")
ACCESS_DENIED = 1045
NO_SUCH_TABLE = 1146
REPLICA_RETRY_SECONDS = 5.0  # after a replica failure, read from the primary this long
SECRET_REREAD_SECONDS = 1.0  # at most one secret read a second while passwords are refused
SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  text VARCHAR(500) NOT NULL,
  written_by VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"""


class Unavailable(Exception):
    """A database could not be reached or refused the query."""


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

        self.rds = boto3.client("rds", region_name=region)
        self.secrets = boto3.client("secretsmanager", region_name=region)
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


class Database:
    """Routes writes to the primary and reads to the replica, with fallback."""

    def __init__(self, config, credentials, connect=pymysql.connect, clock=time.monotonic):
        self.config = config
        self.credentials = credentials
        self.connect = connect
        self.clock = clock
        self.replica_down_until = 0.0
        self.schema_ready = False

    def _connection(self, host):
        options = {
            "host": host,
            "port": self.config.get("port", 3306),
            "database": self.config["name"],
            "connect_timeout": self.config.get("connect_timeout_seconds", 2),
            "read_timeout": 5,
            "write_timeout": 5,
            "autocommit": True,
            "charset": "utf8mb4",
            "cursorclass": pymysql.cursors.DictCursor,
        }
        if self.config.get("tls_ca_file"):
            # The chain must lead to the RDS CA; the name cannot match, because the app
            # connects through the private zone's alias, not the instance's RDS name.
            options["ssl"] = {"ca": self.config["tls_ca_file"], "check_hostname": False}
        for attempt in (1, 2):
            user, password = self.credentials.get()
            try:
                return self.connect(user=user, password=password, **options)
            except OSError as error:  # e.g. the RDS CA bundle missing or a TLS failure
                raise Unavailable(f"{host}: {error}") from None
            except pymysql.MySQLError as error:
                if error.args and error.args[0] == ACCESS_DENIED and attempt == 1:
                    log.warning("%s refused the credentials; reading the secret again", host)
                    self.credentials.invalidate()
                    continue
                raise Unavailable(f"{host}: {error.args[-1] if error.args else error}") from None
        raise AssertionError("unreachable")

    def _run(self, host, *statements):
        """Run (sql, params) pairs on one connection; the last one's rows."""
        connection = self._connection(host)
        try:
            with connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
                return cursor.fetchall()
        except pymysql.MySQLError as error:
            raise Unavailable(f"{host}: {error.args[-1] if error.args else error}") from error
        finally:
            connection.close()

    def ensure_schema(self):
        if not self.schema_ready:
            self._run(self.config["primary_host"], (SCHEMA, ()))
            self.schema_ready = True

    def write_message(self, text, written_by):
        self.ensure_schema()
        rows = self._run(
            self.config["primary_host"],
            ("INSERT INTO messages (text, written_by) VALUES (%s, %s)", (text, written_by)),
            ("SELECT * FROM messages WHERE id = LAST_INSERT_ID()", ()),
        )
        return rows[0]

    def read_messages(self, limit):
        """Newest messages first and where they were read from: `replica` or `primary`."""
        sql = "SELECT * FROM messages ORDER BY id DESC LIMIT %s"
        if self.clock() >= self.replica_down_until:
            try:
                return self._select(self.config["replica_host"], sql, limit), "replica"
            except Unavailable as error:
                log.warning("replica unavailable, reading from the primary: %s", error)
                self.replica_down_until = self.clock() + REPLICA_RETRY_SECONDS
        return self._select(self.config["primary_host"], sql, limit), "primary"

    def _select(self, host, sql, limit):
        try:
            return list(self._run(host, (sql, (limit,))))
        except Unavailable as error:
            cause = error.__cause__
            if isinstance(cause, pymysql.MySQLError) and cause.args[0] == NO_SUCH_TABLE:
                return []  # nothing written yet: the first write creates the table
            raise


def as_json(message):
    created = message["created_at"]
    return {
        "id": message["id"],
        "text": message["text"],
        "written_by": message["written_by"],
        "created_at": created.isoformat() if hasattr(created, "isoformat") else str(created),
    }


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>web-infra</title></head>
<body><h1>Served by {node}</h1><p>Read from the {read_from}. Reload to watch round robin.</p>
<form id="f"><input name="text" maxlength="500" required><button>Write</button></form>
<ul>{items}</ul><script>document.getElementById("f").onsubmit=async e=>{{e.preventDefault();
await fetch("/api/messages",{{method:"POST",headers:{{"Content-Type":"application/json"}},
body:JSON.stringify({{text:e.target.text.value}})}});location.reload()}}</script></body></html>"""


class App:
    """The WSGI application."""

    def __init__(self, node_name, database):
        self.node = node_name
        self.db = database

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            status, body, content_type = self.route(method, path, environ)
        except Exception:
            log.exception("%s %s failed", method, path)
            status, body, content_type = 500, {"error": "internal error"}, None
        if content_type is None:
            body, content_type = json.dumps({**body, "served_by": self.node}), "application/json"
        data = body.encode()
        start_response(
            f"{status} {STATUS_TEXT[status]}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                ("X-Served-By", self.node),
                ("Cache-Control", "no-store"),
            ],
        )
        return [data]

    def route(self, method, path, environ):  # noqa: PLR0911 - one return per answer
        allowed = {"/health": ("GET",), "/": ("GET",), "/api/messages": ("GET", "POST")}
        if path not in allowed:
            return 404, {"error": f"no such path: {path}"}, None
        if method not in allowed[path]:
            return 405, {"error": f"{method} is not allowed on {path}"}, None
        if path == "/health":
            return 200, {"status": "ok"}, None
        if method == "POST":
            return self.post_message(environ)
        try:
            messages, read_from = self.db.read_messages(self.limit(environ))
        except Unavailable as error:
            log.error("read failed: %s", error)
            return 503, {"error": "no database is reachable for reads"}, None
        if path == "/api/messages":
            return 200, {"read_from": read_from, "messages": [as_json(m) for m in messages]}, None
        items = "".join(f"<li>{html.escape(m['text'])}</li>" for m in messages)
        page = PAGE.format(node=html.escape(self.node), read_from=read_from, items=items)
        return 200, page, "text/html; charset=utf-8"

    def limit(self, environ):
        for pair in environ.get("QUERY_STRING", "").split("&"):
            if pair.startswith("limit=") and pair[6:].isdigit():
                return max(1, min(int(pair[6:]), 100))
        return 20

    def post_message(self, environ):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > 4096:
                return 400, {"error": "the body must be at most 4096 bytes"}, None
            text = json.loads(environ["wsgi.input"].read(length))["text"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": 'send JSON like {"text": "hello"}'}, None
        if not isinstance(text, str) or not 1 <= len(text.strip()) <= 500:
            return 400, {"error": "text must be a string of 1 to 500 characters"}, None
        try:
            message = self.db.write_message(text.strip(), self.node)
        except Unavailable as error:
            log.error("write failed: %s", error)
            return 503, {"error": "the primary database is unavailable; nothing was saved"}, None
        return 201, {"written_to": "primary", "message": as_json(message)}, None


STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def create_app(config_path):
    with open(config_path) as f:
        config = json.load(f)
    database = Database(config["database"], credentials_from(config["credentials"]))
    try:
        database.ensure_schema()
    except Unavailable as error:  # the first write creates it once the primary answers
        log.warning("schema not created yet: %s", error)
    return App(config["node_name"], database)


if os.environ.get("WEB_APP_CONFIG"):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    application = create_app(os.environ["WEB_APP_CONFIG"])
