"""Bad input never reaches AWS, and never a traceback (issue 15, item 8).

Property-based: Hypothesis tries values a hostile or careless user would type, over every
settings key, whole stack files, the stack name and the arguments of each command. Every value
the issue lists is an explicit `@example`. The properties:

- settings: a value is either refused with `SettingsError` (the message names the key, quotes
  the value cut to 60 characters and escapes invisible characters) or accepted as a clean
  value (no control, bidi or shell characters, no trailing newline); never another exception;
- the stack name: a clear `SettingsError`, or names that AWS accepts and that no other stack
  name maps to;
- commands: a usage error is one line naming the argument, exit status 2, no traceback, and
  no command hangs (subprocesses run with a timeout).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from test_verify import raw_outputs_for

from lab import __main__ as lab_cli
from lab.boot import __main__ as boot_cli
from settings import Settings, SettingsError, load_settings, load_stack_file
from settings.aws_provider import AWS_KEYS
from settings.errors import MAX_SHOWN, shown
from settings.instance_types import cpu_architecture, ec2_instance_types
from settings.keys import EC2_DATABASE_KEYS, KNOWN_KEYS, NAMESPACE
from tools import ami

ROOT = Path(__file__).resolve().parent.parent
OURS = tuple(f"{NAMESPACE}:{key}" for key in KNOWN_KEYS)
# Keys no part of the program reads: they must be refused, not ignored.
MISSPELT = (
    "web-infa:instanceType",
    "web-infra:instanceTyp",
    "Web-Infra:webNodeCount",
    "aws:regoin",
)
VALID = {
    "webNodeCount": "3",
    "instanceType": "t3.small",
    "loadBalancerInstanceType": "t4g.micro",
    "loadBalancerCount": "1",
    "dbMode": "rds",
    "dbInstanceClass": "db.t4g.small",
    "dbAllocatedStorageGb": "20",
    "dbBackupRetentionDays": "7",
    "dbMultiAz": "true",
    "vpcCidr": "10.20.0.0/16",
    "natGateways": "perAz",
    "amiIds": '{"amd64": "ami-0123456789abcdef0"}',
    "deletionProtection": "false",
    "rollingBatchSize": "2",
    "readinessTimeoutMinutes": "15",
    "dbMaxAllocatedStorageGb": "200",
    "dbApplyImmediately": "false",
    "domain": "www.example.com",
    "acmeEmail": "ops@example.com",
    "acmeDirectoryUrl": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "publicZoneId": "Z0123456789ABCDEFGHIJ",
    "hsts": "true",
    "hstsMaxAgeSeconds": "300",
    "dbMaxReplicaLagSeconds": "3",
    "alarmEmail": "ops@example.com",
    "logRetentionDays": "30",
    "dbInstanceType": "t4g.small",
}
assert set(VALID) == set(KNOWN_KEYS), "a new key needs a valid example here"
VALID_AWS = {
    "aws:region": "eu-west-1",
    "aws:profile": "deploy",
    "aws:allowedAccountIds": '["123456789012"]',
    "aws:forbiddenAccountIds": '["123456789012"]',
    "aws:defaultTags": '{"tags": {"CostCenter": "web 42"}}',
    "aws:maxRetries": "5",
}
assert set(VALID_AWS) == set(AWS_KEYS)
NASTY = ("\n", "\r\n", " ", "\x00", "\u202e", "\u200f", "\x1b[31m", "$(reboot)", ";", "'", "`")
DEEP = "[" * 1000 + "]" * 1000
HUGE = "a" * 100_000

# Every bad value the issue lists, as (key, value): each must be refused.
BAD: list[tuple[str, Any]] = [
    # A trailing newline on every key but amiIds (JSON, which allows one after the value).
    *[(f"{NAMESPACE}:{key}", VALID[key] + "\n") for key in VALID if key != "amiIds"],
    (f"{NAMESPACE}:instanceType", "t3.small\n"),
    (f"{NAMESPACE}:amiIds", DEEP),
    ("aws:allowedAccountIds", DEEP),
    ("aws:defaultTags", '{"tags": ' + DEEP + "}"),
    (f"{NAMESPACE}:logRetentionDays", "30.7"),
    (f"{NAMESPACE}:logRetentionDays", 30.7),
    (f"{NAMESPACE}:logRetentionDays", "3_0"),
    (f"{NAMESPACE}:readinessTimeoutMinutes", "3_0"),
    (f"{NAMESPACE}:readinessTimeoutMinutes", 30.7),
    (f"{NAMESPACE}:webNodeCount", math.inf),
    (f"{NAMESPACE}:webNodeCount", "٣"),  # an Arabic-Indic three: int() would take it
    *[
        (f"{NAMESPACE}:{key}", email)
        for key in ("alarmEmail", "acmeEmail")
        for email in (
            "a@..com",
            "mailto:a@b.com",
            "a$(reboot)@b.com",
            "a\x00@b.com",
            "a\u200f@b.com",
            "a\u202e@b.com",
            "a@b.com\n",
            "a|b@c.com",
            "`reboot`@b.com",
        )
    ],
    *[
        (f"{NAMESPACE}:vpcCidr", cidr)
        for cidr in (
            "127.0.0.0/16",
            "169.254.0.0/16",
            "0.0.0.0/16",
            "240.0.0.0/16",
            "100.64.0.0/16",
        )
    ],
    ("aws:defaultTags", json.dumps({"tags": {"aws:team": "web"}})),
    ("aws:defaultTags", json.dumps({"tags": {f"k{i}": "v" for i in range(51)}})),
    ("aws:defaultTags", json.dumps({"tags": {"k" * 129: "v"}})),
    ("aws:defaultTags", json.dumps({"tags": {"k": "v" * 257}})),
    ("aws:defaultTags", json.dumps({"tags": {"team<": "web"}})),
    ("aws:defaultTags", json.dumps({"tags": {"team": "web\n"}})),
    *[(key, "t3.small") for key in MISSPELT],
    (f"{NAMESPACE}:instanceType", "t3.huge"),
    (f"{NAMESPACE}:instanceType", "x9.large"),
    (f"{NAMESPACE}:loadBalancerInstanceType", "mac2.metal"),
    (f"{NAMESPACE}:dbInstanceClass", "db.zz9.huge"),
    (f"{NAMESPACE}:domain", HUGE),
    (f"{NAMESPACE}:domain", "K.example.com".replace("K", "\u212a")),  # Kelvin sign: lower() is k
    (f"{NAMESPACE}:acmeDirectoryUrl", "https://acme.example/dir$(reboot)"),
    ("aws:region", "eu-west-1\n"),
    ("aws:profile", "deploy\n"),
]

keys = st.sampled_from((*OURS, *AWS_KEYS, *MISSPELT))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=80),
    st.just(HUGE),
)
near_valid = st.builds(
    lambda value, nasty, before: nasty + value if before else value + nasty,
    st.sampled_from([*VALID.values(), *VALID_AWS.values()]),
    st.sampled_from(NASTY),
    st.booleans(),
)
values = st.one_of(
    scalars,
    near_valid,
    st.sampled_from([*VALID.values(), *VALID_AWS.values()]),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
)
# What an accepted text value may hold: printable ASCII without spaces, quotes or shell syntax
# (a URL's & ? = are fine). Tag values are the exception: AWS allows spaces and letters.
CLEAN = re.compile(r"[A-Za-z0-9._:/@+%=?&,~-]*")


def with_bad_examples(test: Any) -> Any:
    for key, value in BAD:
        test = example(key=key, value=value)(test)
    return test


def assert_clear_error(message: str, key: str, value: Any) -> None:
    assert key.split(":", 1)[1] in message, f"the error does not name {key}: {message[:300]}"
    assert "Traceback" not in message
    assert all(c.isprintable() or c == "\n" for c in message), (
        f"an unescaped invisible character in: {message[:300]!r}"
    )
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        assert value not in message, "the bad value is echoed whole: cut it short"
    assert len(message) < 4000, "the error floods the terminal"


def assert_clean(settings: Settings) -> None:
    for name, value in vars(settings).items():
        texts = (
            [value]
            if isinstance(value, str)
            else [*value.keys(), *value.values()]
            if isinstance(value, dict)
            else []
        )
        for text in texts:
            assert CLEAN.fullmatch(text), f"{name} accepted {text!r}"


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@with_bad_examples
@given(key=keys, value=values)
def test_every_key_refuses_clearly_or_accepts_a_clean_value(key: str, value: Any) -> None:
    """Guards trailing newlines, `30.7` read as 30, deep JSON tracebacks, shell and bidi
    characters in e-mail addresses, non-RFC 1918 ranges, tags AWS refuses, misspelt
    namespaces, made-up instance types and untruncated 100 KB echoes."""
    must_refuse = any(k == key and v == value and type(v) is type(value) for k, v in BAD)
    config = {key: value, "aws:region": "eu-west-1"} if key != "aws:region" else {key: value}
    try:
        loaded = load_settings(config, stack="dev")
    except SettingsError as error:
        assert_clear_error(str(error), key, value)
        return
    assert not must_refuse, f"{key} = {shown(value)} was accepted"
    assert_clean(loaded)


@pytest.mark.parametrize("key", OURS)
def test_every_key_accepts_its_documented_example(key: str) -> None:
    """The refusals above must not reject ordinary values (a test that refuses everything
    would pass them)."""
    name = key.removeprefix(f"{NAMESPACE}:")
    https = ("domain", "acmeEmail", "publicZoneId")  # each needs the others (cross-key rules)
    extra = {k: VALID[k] for k in https[:2]} if name in https else {}
    if name in EC2_DATABASE_KEYS:  # the database hosts' keys need their mode
        extra = {"dbMode": "ec2"}
    load_settings({**extra, key: VALID[name], **VALID_AWS}, stack="dev")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vpcCidr", "10.1.2.0/24"),  # the README's smallest VPC
        ("vpcCidr", "172.31.0.0/16"),
        ("vpcCidr", "192.168.0.0/16"),
        ("logRetentionDays", 30),
        ("webNodeCount", "4"),
        ("alarmEmail", "ops+alerts@mail.example.co.uk"),
        ("instanceType", "m7i-flex.large"),
        ("instanceType", "a1.large"),
        ("dbInstanceClass", "db.r6g.large"),
    ],
)
def test_documented_edges_stay_accepted(key: str, value: Any) -> None:
    load_settings({key: value}, stack="dev")


def test_graviton_types_get_the_arm64_image_and_made_up_types_are_refused() -> None:
    """Guards `a1.large` getting the amd64 image: every Graviton (and Grace) family of the
    locked EC2 model is arm64, every other family amd64."""
    arm64 = {t for t in ec2_instance_types() if cpu_architecture(t) == "arm64"}
    families = {t.partition(".")[0] for t in arm64}
    assert {"a1", "t4g", "m6g", "m7gd", "c6gn", "x2gd", "im4gn", "is4gen", "g5g"} <= families
    assert {"p6e-gb200", "hpc7g", "r8gb"} <= families
    amd64 = {t.partition(".")[0] for t in ec2_instance_types()} - families
    assert {"t3", "m7i-flex", "g5", "gr6", "p5en", "u-6tb1", "c7a", "inf2"} <= amd64
    with pytest.raises(SettingsError, match=r"'t3\.huge' is not allowed"):
        load_settings({"instanceType": "t3.huge"}, stack="dev")


# --- whole stack files -----------------------------------------------------------------------

STACK_FILES = [
    "config: [\n",
    "config:\n  web-infra:webNodeCount: .inf\n",
    "config:\n  web-infra:webNodeCount: .nan\n",
    "- config\n",
    ".inf\n",
    "config: !!python/object/apply:os.system ['true']\n",
    "config:\n  web-infra:instanceType: !!python/name:os.system\n",
    "config: " + "[" * 1000 + "]" * 1000 + "\n",
    "config:\n  " + "a: " * 50 + "b\n",
    "config:\n  web-infa:instanceType: t3.small\n",
    "config:\n  ? [1, 2]\n  : 3\n",
    "config:\n  1: 2\n",
    "\x00\n",
    "config: {web-infra:domain: &a [*a]}\n",
]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(text=STACK_FILES[0])
@given(text=st.one_of(st.sampled_from(STACK_FILES), st.text(max_size=300)))
def test_a_stack_file_loads_or_says_what_is_wrong(text: str, tmp_path_factory: Any) -> None:
    """Guards tracebacks on odd YAML (`.inf`, a list at the top, syntax errors, `!!python`
    tags, deep nesting) in the lab and `tools.ami`, which read stack files themselves."""
    path = tmp_path_factory.mktemp("stack") / "Pulumi.dev.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_stack_file(path)
    except SettingsError as error:
        message = str(error)
        assert "Traceback" not in message
        assert all(c.isprintable() or c == "\n" for c in message)
        assert len(message) < 4000


@pytest.mark.parametrize("text", STACK_FILES)
def test_each_listed_stack_file_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError):
        load_stack_file(path)


# --- the stack name --------------------------------------------------------------------------

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
RDS_IDENTIFIER = re.compile(r"[a-z](?!.*--)[a-z0-9-]{0,61}[a-z0-9]")


def names_are_valid(loaded: Settings) -> None:
    prefix = loaded.name_prefix
    assert DNS_LABEL.fullmatch(prefix), f"name prefix {prefix!r} is not a DNS label"
    # Every physical name built from the prefix is checked against AWS's rules by the
    # deploy-graph test; here: the prefix itself, the RDS identifiers and the private zone.
    primary, replica = loaded.db_primary_identifier, loaded.db_replica_identifier
    assert RDS_IDENTIFIER.fullmatch(primary), primary
    assert RDS_IDENTIFIER.fullmatch(replica), replica
    assert primary != replica, f"primary and replica are both {primary!r}"
    zone = loaded.internal_zone
    assert all(DNS_LABEL.fullmatch(label) for label in zone.split(".")), zone
    assert len(zone) <= 253


def name_or_clear_error(stack: str) -> Settings | None:
    try:
        loaded = load_settings({}, stack=stack)
    except SettingsError as error:
        message = str(error)
    else:
        names_are_valid(loaded)
        return loaded
    assert "stack" in message.lower(), f"the error does not name the stack: {message}"
    assert all(c.isprintable() or c == "\n" for c in message)
    return None


@pytest.mark.parametrize(
    "stack",
    [
        "dev",
        "prod",
        "staging-2",
        "production-eu-west-1",
        "a" * 52,
        "a" * 64,
        "x" * 40,
    ],
)
def test_a_stack_name_gives_valid_names_or_a_clear_error(stack: str) -> None:
    """Guards names past IAM's 64 and RDS's 63 characters and a primary and replica cut to the
    same identifier."""
    name_or_clear_error(stack)


@pytest.mark.parametrize(
    ("one", "other"),
    [("a_b", "a.b"), ("A-B", "a-b"), ("a_b", "a-b"), ("A_B", "a-b")],
)
def test_two_stack_names_never_share_names(one: str, other: str) -> None:
    """Guards two stacks of one account colliding on every physical name."""
    first, second = name_or_clear_error(one), name_or_clear_error(other)
    if first is not None and second is not None:
        assert first.name_prefix != second.name_prefix, f"{one!r} and {other!r} collide"


@settings(max_examples=200, deadline=None)
@example(stack="production-eu-west-1")
@example(stack="a" * 52)
@example(stack="a" * 64)
@given(stack=st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=80))
def test_any_stack_name_gives_valid_names_or_a_clear_error(stack: str) -> None:
    name_or_clear_error(stack)


# --- commands, in process (many arguments) ---------------------------------------------------


@pytest.fixture(autouse=True)
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    """No command here may reach AWS: no credentials anywhere, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    nowhere = str(tmp_path_factory.getbasetemp() / "no-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
    monkeypatch.setenv("AWS_CONFIG_FILE", nowhere)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found first: an earlier test of the same
    # process (moto's, say) must not lend them to the commands here.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def exit_status(main: Any, argv: list[str]) -> int:
    try:
        return int(main(argv))
    except SystemExit as stop:
        return int(stop.code or 0)


arguments = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e3", "3_0", "3.0", "21", "2\n", HUGE]),
    st.builds(lambda t, n: t + n, st.sampled_from(["3", "dev", "web-1"]), st.sampled_from(NASTY)),
).filter(lambda a: not a.startswith("-") or a in ("-1", "-inf"))
NO_STACK = "no-such-stack-for-tests"  # so that a valid argument stops at "no stack file"


def stack_file_exists(stack: str) -> bool:
    return ami.is_file(ROOT / f"Pulumi.{stack}.yaml")


def assert_one_line_usage_error(error: str, argument: str) -> None:
    assert error.count("\n") == 1, f"not one line: {error[:400]!r}"
    assert argument in error, f"does not name {argument}: {error[:300]}"
    assert "Traceback" not in error
    assert len(error) < 600, "the bad value is not cut short"
    assert all(c.isprintable() for c in error.rstrip("\n"))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(flag="--ready-timeout", value="nan")
@example(flag="--ready-timeout", value="inf")
@example(flag="--web-nodes", value="3_0")
@example(flag="--web-nodes", value=HUGE)
@example(flag="--stack", value="../etc")
@example(flag="--stack", value="dev\n")
@given(flag=st.sampled_from(["--ready-timeout", "--web-nodes", "--stack"]), value=arguments)
def test_lab_arguments(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m lab`: exit 2 with one line naming the argument, never a start (the stack
    does not exist, so even a valid value stops before anything runs)."""
    stack = value if flag == "--stack" else NO_STACK
    assume(not stack_file_exists(stack))  # `lab up` of a real stack would start the lab
    head = ["--stack", stack] + (["--ready-timeout", value] if flag == "--ready-timeout" else [])
    up = ["up", "--web-nodes", value] if flag == "--web-nodes" else ["up"]
    status = exit_status(lab_cli.main, [*head, *up])
    error = capsys.readouterr().err
    assert status == 2
    # A valid value gets as far as the missing stack file, which names --stack.
    assert_one_line_usage_error(error, flag if NO_STACK not in error else "--stack")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(argv=["--stack", "x/y", "up"])
@example(argv=["up", "--web-nodes", "1"])
@example(argv=["up", "--image", "sid\u202e"])
@example(argv=["reboot", "web-1\x00"])
@example(argv=["reboot", HUGE])
@given(
    argv=st.one_of(
        st.builds(lambda v: ["--stack", NO_STACK, "up", "--web-nodes", v], arguments),
        st.builds(lambda v: ["--stack", v, "up"], arguments),
        st.builds(lambda v: ["reboot", v + "\n"], arguments),
    )
)
def test_boot_lab_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m lab.boot`: the same, checked before it asks for root or touches anything."""
    assume(not stack_file_exists(argv[1]))  # `lab.boot up` of a real stack would boot it
    status = exit_status(boot_cli.main, argv)
    error = capsys.readouterr().err
    assert status == 2, error
    assert_one_line_usage_error(error, "argument")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(argv=["--stack", "dev\n"])
@example(argv=["--region", "x" * 1000])
@example(argv=["--region", "eu-west-1\u202e"])
@example(argv=["--file", "/"])
@example(argv=["--file", "/nonexistent\x00"])
@example(argv=["--stack"])
@example(argv=["--write", "extra"])
@example(argv=["--file", str(ROOT / "Pulumi.dev.yaml")])  # no credentials: one line, exit 1
@given(
    argv=st.one_of(
        st.builds(lambda v: ["--stack", v], arguments),
        st.builds(lambda v: ["--region", v, "--file", "/nonexistent"], arguments),
        st.builds(lambda v: ["--file", v], arguments),
    )
)
def test_ami_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tools.ami`: usage errors exit 2, missing credentials exit 1, both one line."""
    status = exit_status(ami.main, argv)
    error = capsys.readouterr().err
    assert status in (1, 2), error
    assert error.count("\n") == 1, error[:400]
    assert "Traceback" not in error
    assert len(error) < 600
    if status == 1:
        assert "no AWS credentials found" in error


# --- commands, as subprocesses (a few each: no hang, no traceback) ---------------------------


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") or key in ("AWS_EC2_METADATA_DISABLED",)
    }
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        return subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`python -m {' '.join(argv)[:200]}` hangs (no answer in {timeout} s)")


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["tools.ami", "--file", "Pulumi.dev.yaml"], 1, "no AWS credentials found"),
        (["lab", "--ready-timeout", "nan", "status"], 2, "argument --ready-timeout"),
        (["lab.boot", "up", "--web-nodes", "3_0"], 2, "argument --web-nodes"),
    ],
)
def test_commands_as_a_user_runs_them(argv: list[str], status: int, says: str) -> None:
    result = run(*argv)
    assert result.returncode == status, result.stderr[-2000:]
    assert says in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


# --- tools.verify (its arguments belong to tools/verify/cli.py; only tests here) -------------


class _Site(BaseHTTPRequestHandler):
    """A site whose writes are never read back: only a deadline ends `tools.verify`'s wait."""

    def do_POST(self) -> None:  # http.server's name
        self._json(201, {"id": 1, "text": "never listed"})

    def do_GET(self) -> None:
        self._json(200, {"messages": [], "read_from": "replica"})

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def verify_outputs(tmp_path: Path, url: str) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw_outputs_for(url)))
    return str(path)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("--read-back-seconds", "nan"),
        ("--read-back-seconds", "inf"),
        ("--read-back-seconds", "-1"),
        ("--timeout", "nan"),
        ("--timeout", "0"),
        ("--region", "eu-west-1\n"),
    ],
)
def test_verify_refuses_its_own_bad_arguments(
    argument: str, value: str, site: str, tmp_path: Path
) -> None:
    """Guards the endless wait on `--read-back-seconds nan|inf` and bad arguments reported as
    site failures (exit 1) instead of usage errors (exit 2)."""
    outputs = verify_outputs(tmp_path, site)
    result = run("tools.verify", "--outputs", outputs, "--skip-aws", argument, value, timeout=5)
    assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-1000:]
    # argparse's style: the usage, then one line that names the argument.
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert argument in last, result.stderr[-1000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr) < 2000


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:port",
        "ftp://x",
    ],
)
def test_verify_says_what_is_wrong_with_a_malformed_url(url: str, tmp_path: Path) -> None:
    """Guards tracebacks for a malformed URL or port in the outputs: exit 2, one line."""
    result = run("tools.verify", "--outputs", verify_outputs(tmp_path, url), "--skip-aws")
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-1000:]
    assert "url" in result.stderr
