"""Where the app's database user and password come from: a file (the local lab), or the app's
own secret in Secrets Manager (AWS), read when first needed and again after MySQL refuses the
password (a rotation). Changes when the secret's source or its retry policy does.
"""

import json
import threading
import time

from .failures import Unavailable

SECRET_REREAD_SECONDS = 1.0  # while passwords are refused
# After the secret could not be read (first boot can beat its policy or the secret itself),
# requests answer 503 at once for this long, then one of them tries again: a worker asks
# Secrets Manager at most once per interval however busy it is.
SECRET_RETRY_SECONDS = 5.0


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
