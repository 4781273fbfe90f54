"""Typed, validated settings for the web-infra stack.

Every `web-infra:*` config key is read and checked here, once, before any resource is registered.
The loader is pure (no Pulumi runtime, no AWS): it takes the raw key/value pairs of a stack's
config and returns a frozen `Settings` or raises `SettingsError` naming every bad key, the bad
value and what is allowed. `__main__.py` feeds it `pulumi.Config`; the local lab feeds it the
stack's `Pulumi.<stack>.yaml`, so both agree on what a stack looks like.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from userdata.metric_catalog import (
    LOG_RETENTION_DAYS_ALLOWED,
    estimated_max_connections,
    rds_class_memory_gib,
)

NAMESPACE = "web-infra"

MIN_WEB_NODES = 2  # active-active needs two; fewer is a single point of failure
# HAProxy names a server slot per possible node (web-1 ... web-20), so its config does not change
# with the node count; the /16 private subnets stay small.
MAX_WEB_NODES = 20
CPU_ARCHITECTURES = ("amd64", "arm64")  # Ubuntu's names, as in Canonical's AMI parameters
# What one web node may hold open to one database (see database_connections_needed): the
# gunicorn workers per node and the app's query slots per worker and server.
GUNICORN_WORKERS = 2
APP_MAX_CONCURRENT_QUERIES = 5
DATABASE_CONNECTION_HEADROOM = 10
_CONNECTIONS_PER_NODE = GUNICORN_WORKERS * (APP_MAX_CONCURRENT_QUERIES + 1)

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_DB_INSTANCE_CLASS = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
# A public DNS name: two or more labels of letters, digits and inner hyphens, no wildcard.
_DOMAIN = re.compile(
    r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{4,31}$")
LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
HSTS_MAX_AGE_LIMIT = 63072000  # two years, Mozilla's recommendation
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
# Graviton families carry a "g" after the generation digit: t4g, m7g, c7gn, x2gd, is4gen.
_ARM64_INSTANCE_TYPE = re.compile(r"^[a-z]+\d+[a-z-]*g[a-z-]*\.")


class SettingsError(ValueError):
    """One or more config values are wrong; the message says which and how to fix them."""


@dataclass(frozen=True)
class Settings:
    """What a stack of web-infra is made of. Field docs give the config key and its rules."""

    project: str
    stack: str
    web_node_count: int
    """`webNodeCount`: web nodes behind the load balancer, 2 to 20."""
    instance_type: str
    """`instanceType`: EC2 type of every web node."""
    load_balancer_instance_type: str
    """`loadBalancerInstanceType`: EC2 type of the HAProxy instance."""
    db_mode: str
    """`dbMode`: how the database is run; `rds` (RDS MySQL primary + read replica)."""
    db_instance_class: str
    """`dbInstanceClass`: RDS class of the primary and the replica."""
    db_allocated_storage_gb: int
    """`dbAllocatedStorageGb`: gp3 storage of the primary, 20 to 16384 GiB."""
    db_backup_retention_days: int
    """`dbBackupRetentionDays`: automated backups kept on the primary, 1 to 35 days."""
    db_multi_az: bool
    """`dbMultiAz`: a synchronous standby for the primary in a second AZ."""
    vpc_cidr: str
    """`vpcCidr`: private IPv4 range of the VPC, /16 to /24."""
    nat_gateways: str
    """`natGateways`: `single` (one NAT gateway) or `perAz` (one per AZ)."""
    ami_ids: dict[str, str]
    """`amiIds`: the pinned image per CPU architecture (`amd64`, `arm64`); unpinned ones follow
    Canonical's current Ubuntu 24.04 image."""
    deletion_protection: bool
    """`deletionProtection`: refuse to delete the database instances."""
    rolling_batch_size: int | None
    """`rollingBatchSize`: web nodes replaced at once after the first (the canary); None: auto."""
    readiness_timeout_minutes: int
    """`readinessTimeoutMinutes`: how long `pulumi up` waits for a new host to serve."""
    db_max_allocated_storage_gb: int
    """`dbMaxAllocatedStorageGb`: storage autoscaling limit of the primary and the replica."""
    db_apply_immediately: bool
    """`dbApplyImmediately`: apply database changes now instead of in the maintenance window."""
    domain: str | None
    """`domain`: the site's DNS name; with it the load balancer gets a certificate by ACME and
    redirects HTTP to HTTPS. None: HTTPS with a self-signed certificate, no redirect."""
    acme_email: str | None
    """`acmeEmail`: the ACME account's contact (expiry warnings); required with a domain."""
    acme_directory_url: str
    """`acmeDirectoryUrl`: the ACME server; Let's Encrypt's production one by default."""
    public_zone_id: str | None
    """`publicZoneId`: a public Route 53 zone in which the program points `domain` at the
    Elastic IP; None: the domain's DNS is managed elsewhere."""
    hsts: bool
    """`hsts`: send Strict-Transport-Security once the CA-issued certificate serves."""
    hsts_max_age_seconds: int
    """`hstsMaxAgeSeconds`: how long browsers insist on HTTPS, 300 s to 2 years."""
    db_max_replica_lag_seconds: int
    """`dbMaxReplicaLagSeconds`: staler than this, the replica is not read (the primary is)."""
    alarm_email: str | None
    """`alarmEmail`: an address subscribed to the stack's alarm topic (AWS asks to confirm)."""
    log_retention_days: int
    """`logRetentionDays`: how long the hosts' logs are kept in CloudWatch Logs."""

    @property
    def name_prefix(self) -> str:
        """The start of every physical name, `web-infra-dev`: see `name_label`."""
        return fit_name(f"{name_label(self.project)}-{name_label(self.stack)}", NAME_PREFIX_MAX)

    @property
    def internal_zone(self) -> str:
        """The private Route 53 zone that names every host, known before anything exists."""
        return f"{name_label(self.stack)}.{name_label(self.project)}.internal"

    @property
    def web_node_names(self) -> list[str]:
        return web_node_names(self.web_node_count)

    @property
    def rollout_batches(self) -> list[list[str]]:
        """The order in which changed web nodes are replaced: the canary first, then batches."""
        return rollout_batches(self.web_node_names, self.rolling_batch_size)

    @property
    def readiness_parameter_prefix(self) -> str:
        """The SSM path under which each host reports that it serves: `/web-infra-dev/ready`."""
        return f"/{self.name_prefix}/ready"

    @property
    def db_primary_identifier(self) -> str:
        return f"{self.name_prefix}-primary"

    @property
    def db_replica_identifier(self) -> str:
        return f"{self.name_prefix}-replica"


# --- physical names: valid for AWS and distinct for every stack name Pulumi accepts ---

# What `pulumi stack init` accepts. The lab also takes stack names from file names, which may
# hold anything; those are refused here rather than mangled into a name nobody chose.
_PULUMI_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
LABEL_MAX = 40
"""The longest stack (or project) part of a physical name: the private zone's first label
stays within DNS's 63 characters, and the prefix below within its limit."""
NAME_PREFIX_MAX = 50
"""RDS identifiers allow 63 characters: the prefix, then `-primary` or `-replica`."""
NAME_HASH_LENGTH = 6


def _slug(text: str) -> str:
    """Lowercase letters, digits and single inner hyphens: what RDS identifiers, S3 buckets and
    DNS labels all accept."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug) or "stack"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:NAME_HASH_LENGTH]


def fit_name(name: str, limit: int) -> str:
    """`name` if it fits in `limit` characters; otherwise its start and a short hash of the
    whole, so that two long names sharing a start stay two names."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - NAME_HASH_LENGTH - 1].rstrip('-')}-{_digest(name)}"


def name_label(text: str) -> str:
    """A stack or project name as it appears in physical names: unchanged when it is already
    lowercase letters, digits and single inner hyphens of at most LABEL_MAX characters.
    Otherwise slugged, cut and followed by a hash of the original: `a_b`, `a.b`, `A-B` and
    `A_B` would all slug to `a-b`, and two stacks of one account must not share names."""
    slug = _slug(text)
    if slug == text and len(slug) <= LABEL_MAX:
        return slug
    return f"{slug[: LABEL_MAX - NAME_HASH_LENGTH - 1].rstrip('-')}-{_digest(text)}"


def stack_name_problems(stack: str) -> list[str]:
    if _PULUMI_STACK_NAME.fullmatch(stack):
        return []
    shown = stack if len(stack) <= 60 else f"{stack[:60]}..."
    return [
        f"stack name {shown!r} is not allowed; use 1 to 100 letters, digits, '-', '_' or '.' "
        "(what `pulumi stack init` accepts)"
    ]


def web_node_names(count: int) -> list[str]:
    return [f"web-{i}" for i in range(1, count + 1)]


def default_batch_size(node_count: int) -> int:
    """One node at a time for small tiers; a quarter of a large tier (5 of 20) at once."""
    return 1 if node_count <= 4 else math.ceil(node_count / 4)


def rollout_batches(nodes: list[str], batch_size: int | None = None) -> list[list[str]]:
    """`nodes` in replacement order: a one-node canary, then batches of `batch_size`.

    A release whose canary never becomes ready stops there: the later batches wait for the
    earlier batches' readiness gates, so they are never touched.
    """
    size = min(batch_size or default_batch_size(len(nodes)), len(nodes))
    canary, rest = nodes[:1], nodes[1:]
    return [canary] + [rest[i : i + size] for i in range(0, len(rest), size)]


def cpu_architecture(instance_type: str) -> str:
    """`arm64` for Graviton instance types, `amd64` otherwise (Ubuntu's naming)."""
    return "arm64" if _ARM64_INSTANCE_TYPE.match(instance_type) else "amd64"


# --- value parsers: each returns the typed value or raises ValueError with what is allowed ---


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        allowed = f"a whole number from {low} to {high}"
        if isinstance(raw, bool):
            raise ValueError(allowed)
        if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
            raw = int(raw)
        if not isinstance(raw, int) or not low <= raw <= high:
            raise ValueError(allowed)
        return raw

    return parse


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ValueError("true or false")


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if raw not in allowed:
            raise ValueError("one of " + ", ".join(repr(a) for a in allowed))
        return str(raw)

    return parse


def _matching(pattern: re.Pattern[str], allowed: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if not isinstance(raw, str) or not pattern.match(raw):
            raise ValueError(allowed)
        return raw

    return parse


def _vpc_cidr(raw: Any) -> str:
    allowed = (
        "a private IPv4 CIDR (10/8, 172.16/12 or 192.168/16) from /16 to /24, e.g. 10.20.0.0/16"
    )
    try:
        network = ipaddress.IPv4Network(str(raw), strict=True)
    except ValueError:
        raise ValueError(allowed) from None
    if not (16 <= network.prefixlen <= 24 and network.is_private):
        raise ValueError(allowed)
    return str(network)


def _ami_ids(raw: Any) -> dict[str, str]:
    allowed = (
        "a map of CPU architecture to AMI id, e.g. {amd64: ami-0123456789abcdef0} "
        "(`python -m tools.ami --stack <stack> --write` pins Canonical's current images)"
    )
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise ValueError(allowed) from None
    if not isinstance(raw, dict):
        raise ValueError(allowed)
    for architecture, ami in raw.items():
        if architecture not in CPU_ARCHITECTURES:
            raise ValueError(f"{allowed}; architectures are {', '.join(CPU_ARCHITECTURES)}")
        if not isinstance(ami, str) or not _AMI_ID.match(ami):
            raise ValueError(f"{allowed}; {ami!r} is not an AMI id")
    return {str(k): str(v) for k, v in sorted(raw.items())}


def _domain(raw: Any) -> str:
    allowed = (
        "a DNS name you control, such as www.example.com (letters, digits, hyphens and dots; "
        "no scheme, path, port or wildcard)"
    )
    if not isinstance(raw, str):
        raise ValueError(allowed)
    name = raw.strip().lower().removesuffix(".")
    if not _DOMAIN.match(name):
        raise ValueError(allowed)
    return name


def _acme_directory_url(raw: Any) -> str:
    allowed = (
        f"an https:// ACME directory URL: {LETS_ENCRYPT_PRODUCTION} (the default) or, "
        f"for trials, Let's Encrypt's staging server {LETS_ENCRYPT_STAGING}"
    )
    if not isinstance(raw, str) or not re.match(r"^https://[^\s/]+/\S*$", raw):
        raise ValueError(allowed)
    return raw


def _one_of_numbers(allowed: tuple[int, ...]) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        message = "one of " + ", ".join(map(str, allowed))
        if isinstance(raw, bool):
            raise ValueError(message)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(message) from None
        if value not in allowed:
            raise ValueError(message)
        return value

    return parse


@dataclass(frozen=True)
class _Key:
    name: str
    field: str
    default: Any
    parse: Callable[[Any], Any]


_KEYS = (
    _Key("webNodeCount", "web_node_count", 2, _integer(MIN_WEB_NODES, MAX_WEB_NODES)),
    _Key(
        "instanceType",
        "instance_type",
        "t3.small",
        _matching(_INSTANCE_TYPE, "an EC2 instance type such as t3.small"),
    ),
    _Key(
        "loadBalancerInstanceType",
        "load_balancer_instance_type",
        "t3.micro",
        _matching(_INSTANCE_TYPE, "an EC2 instance type such as t3.micro"),
    ),
    _Key("dbMode", "db_mode", "rds", _choice("rds")),
    _Key(
        "dbInstanceClass",
        "db_instance_class",
        "db.t4g.micro",
        _matching(_DB_INSTANCE_CLASS, "an RDS instance class such as db.t4g.micro"),
    ),
    _Key("dbAllocatedStorageGb", "db_allocated_storage_gb", 20, _integer(20, 16384)),
    _Key("dbBackupRetentionDays", "db_backup_retention_days", 7, _integer(1, 35)),
    _Key("dbMultiAz", "db_multi_az", False, _boolean),
    _Key("vpcCidr", "vpc_cidr", "10.20.0.0/16", _vpc_cidr),
    _Key("natGateways", "nat_gateways", "single", _choice("single", "perAz")),
    _Key("amiIds", "ami_ids", {}, _ami_ids),
    _Key("deletionProtection", "deletion_protection", True, _boolean),
    _Key("rollingBatchSize", "rolling_batch_size", None, _integer(1, MAX_WEB_NODES)),
    _Key("readinessTimeoutMinutes", "readiness_timeout_minutes", 15, _integer(3, 120)),
    _Key("dbMaxAllocatedStorageGb", "db_max_allocated_storage_gb", 100, _integer(20, 65536)),
    _Key("dbApplyImmediately", "db_apply_immediately", False, _boolean),
    _Key("domain", "domain", None, _domain),
    _Key(
        "acmeEmail",
        "acme_email",
        None,
        _matching(_EMAIL, "an e-mail address for the ACME account, e.g. ops@example.com"),
    ),
    _Key("acmeDirectoryUrl", "acme_directory_url", LETS_ENCRYPT_PRODUCTION, _acme_directory_url),
    _Key(
        "publicZoneId",
        "public_zone_id",
        None,
        _matching(_HOSTED_ZONE_ID, "a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ"),
    ),
    _Key("hsts", "hsts", True, _boolean),
    _Key(
        "hstsMaxAgeSeconds",
        "hsts_max_age_seconds",
        HSTS_MAX_AGE_LIMIT,
        _integer(300, HSTS_MAX_AGE_LIMIT),
    ),
    _Key("dbMaxReplicaLagSeconds", "db_max_replica_lag_seconds", 3, _integer(1, 300)),
    _Key(
        "alarmEmail",
        "alarm_email",
        None,
        _matching(
            re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), "an e-mail address like ops@example.com"
        ),
    ),
    _Key("logRetentionDays", "log_retention_days", 30, _one_of_numbers(LOG_RETENTION_DAYS_ALLOWED)),
)
KNOWN_KEYS = tuple(key.name for key in _KEYS)

# Keys earlier versions accepted: a clear way forward instead of "not a setting".
_REMOVED_KEYS = {
    "adminCidrs": (
        "SSH was removed: no key pair reaches the instances and web nodes have no public "
        "address; use Session Manager (`aws ssm start-session --target i-...`) and remove it "
        "with `pulumi config rm web-infra:adminCidrs`"
    ),
    "amiId": (
        "images are pinned per CPU architecture now: run "
        "`pulumi config rm web-infra:amiId && pulumi config set --path "
        "web-infra:amiIds.amd64 ami-...` (or `python -m tools.ami --stack <stack> --write`)"
    ),
}


def load_settings(raw: Mapping[str, Any], *, project: str = NAMESPACE, stack: str) -> Settings:
    """Validate raw config (keys with or without the `web-infra:` prefix) into `Settings`.

    Values may be native (from YAML) or strings (from `pulumi.Config`). All problems are
    reported together so a user fixes their stack file in one pass.
    """
    values = {
        key.removeprefix(f"{NAMESPACE}:"): value
        for key, value in raw.items()
        if key.startswith(f"{NAMESPACE}:") or ":" not in key  # other namespaces: aws:region
    }
    problems = []
    for removed in sorted(set(values) & set(_REMOVED_KEYS)):
        problems.append(f"{NAMESPACE}:{removed} is no longer a setting: {_REMOVED_KEYS[removed]}")
    for unknown in sorted(set(values) - set(KNOWN_KEYS) - set(_REMOVED_KEYS)):
        hint = difflib.get_close_matches(unknown, KNOWN_KEYS, n=1)
        fix = (
            f"did you mean {NAMESPACE}:{hint[0]}?"
            if hint
            else "known keys: " + ", ".join(KNOWN_KEYS)
        )
        problems.append(f"{NAMESPACE}:{unknown} is not a setting of this program; {fix}")

    fields: dict[str, Any] = {}
    for key in _KEYS:
        if key.name not in values or values[key.name] is None:
            fields[key.field] = key.default
            continue
        try:
            fields[key.field] = key.parse(values[key.name])
        except ValueError as allowed:
            problems.append(
                f"{NAMESPACE}:{key.name} = {values[key.name]!r} is not allowed; use {allowed}"
            )
    problems += _cross_key_problems(fields)
    problems += _parse_aws_provider(raw)[1]
    problems += stack_name_problems(stack)
    if problems:
        raise SettingsError(
            "invalid stack configuration:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nfix it with `pulumi config set {NAMESPACE}:<key> <value>` "
            "or in Pulumi.<stack>.yaml"
        )
    return Settings(project=project, stack=stack, **fields)


def database_connections_needed(web_nodes: int) -> int:
    """The most connections the web tier may open to one database instance, with headroom:
    per node, each gunicorn worker's pool to that server (its query slots and one background
    connection for the heartbeat and breaker probes), plus RDS's own and replication's."""
    return web_nodes * _CONNECTIONS_PER_NODE + DATABASE_CONNECTION_HEADROOM


def _cross_key_problems(fields: dict[str, Any]) -> list[str]:
    """Rules between keys, checked only when each key on its own is valid."""
    problems = []
    nodes, db_class = fields.get("web_node_count"), fields.get("db_instance_class")
    if isinstance(nodes, int) and isinstance(db_class, str):
        try:
            limit = estimated_max_connections(rds_class_memory_gib(db_class))
        except ValueError as error:
            problems.append(f"{NAMESPACE}:dbInstanceClass = {db_class!r}: {error}")
        else:
            needed = database_connections_needed(nodes)
            if needed > limit:
                fits = max(1, (limit - DATABASE_CONNECTION_HEADROOM) // _CONNECTIONS_PER_NODE)
                problems.append(
                    f"{NAMESPACE}:webNodeCount = {nodes} may open {needed} connections to each "
                    f"database, but {db_class} allows about {limit}: use a larger "
                    f"dbInstanceClass (e.g. db.t4g.medium allows about 311) or at most {fits} "
                    "web nodes"
                )
    storage, ceiling = (
        fields.get("db_allocated_storage_gb"),
        fields.get("db_max_allocated_storage_gb"),
    )
    if isinstance(storage, int) and isinstance(ceiling, int) and ceiling <= storage:
        problems.append(
            f"{NAMESPACE}:dbMaxAllocatedStorageGb = {ceiling} must be larger than "
            f"dbAllocatedStorageGb = {storage}, or storage could never grow; raise it"
        )
    domain = fields.get("domain")
    if domain and not fields.get("acme_email"):
        problems.append(
            f"{NAMESPACE}:domain = {domain!r} needs an ACME account e-mail (the CA writes to it "
            f"before a certificate expires); set {NAMESPACE}:acmeEmail"
        )
    for key, field_name in (("acmeEmail", "acme_email"), ("publicZoneId", "public_zone_id")):
        if fields.get(field_name) and not domain:
            problems.append(
                f"{NAMESPACE}:{key} has no effect without a domain; set {NAMESPACE}:domain "
                f"(the site's DNS name) or remove it with `pulumi config rm {NAMESPACE}:{key}`"
            )
    return problems


@dataclass(frozen=True)
class AwsProviderSettings:
    """The stack's `aws:*` settings that web-infra's explicit AWS provider honours.

    The program creates its own provider (to tag every resource), and an explicit provider
    does not read `aws:*` stack settings by itself: a silently ignored `aws:profile` or
    `aws:allowedAccountIds` could deploy to the wrong account. So each supported key is
    passed on, and any other `aws:*` key is an error instead of being ignored.
    """

    region: str | None = None
    profile: str | None = None
    allowed_account_ids: tuple[str, ...] = ()
    forbidden_account_ids: tuple[str, ...] = ()
    default_tags: dict[str, str] = field(default_factory=dict)
    max_retries: int | None = None


_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def _json_value(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _account_ids(raw: Any) -> tuple[str, ...]:
    value = _json_value(raw)
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _ACCOUNT_ID.match(v) for v in value
    ):
        raise ValueError('a list of 12-digit account ids, e.g. ["123456789012"]')
    return tuple(value)


def _default_tags(raw: Any) -> dict[str, str]:
    value = _json_value(raw)
    tags = value.get("tags") if isinstance(value, dict) else None
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ValueError('{"tags": {"Key": "value", ...}}')
    return dict(tags)


_AWS_PARSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "region": ("region", _matching(_AWS_REGION, "an AWS region such as eu-west-1")),
    "profile": ("profile", _matching(re.compile(r"^\S+$"), "a profile name from ~/.aws/config")),
    "allowedAccountIds": ("allowed_account_ids", _account_ids),
    "forbiddenAccountIds": ("forbidden_account_ids", _account_ids),
    "defaultTags": ("default_tags", _default_tags),
    "maxRetries": ("max_retries", _integer(0, 100)),
}


def _parse_aws_provider(raw: Mapping[str, Any]) -> tuple[AwsProviderSettings, list[str]]:
    fields: dict[str, Any] = {}
    problems = []
    for key, value in sorted(raw.items()):
        if not key.startswith("aws:"):
            continue
        name = key.removeprefix("aws:")
        if name not in _AWS_PARSERS:
            problems.append(
                f"{key} is not honoured by web-infra's AWS provider (it honours "
                + ", ".join(f"aws:{k}" for k in _AWS_PARSERS)
                + f"); remove it with `pulumi config rm {key}` and set credentials, roles and "
                "endpoints outside the stack (AWS_PROFILE with a role_arn profile, or the "
                "deploy job's credentials)"
            )
            continue
        field_name, parse = _AWS_PARSERS[name]
        try:
            fields[field_name] = parse(value)
        except ValueError as allowed:
            problems.append(f"{key} = {value!r} is not allowed; use {allowed}")
    return AwsProviderSettings(**fields), problems


def load_aws_provider_settings(raw: Mapping[str, Any]) -> AwsProviderSettings:
    """The stack's `aws:*` keys, validated (`load_settings` reports their problems too)."""
    aws, problems = _parse_aws_provider(raw)
    if problems:
        raise SettingsError(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return aws


def load_stack_file(path: Path, *, stack: str | None = None) -> Settings:
    """Settings from a `Pulumi.<stack>.yaml` file, without the Pulumi CLI (used by the lab)."""
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    ours = {k: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
    stack_name = stack or path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    return load_settings(ours, stack=stack_name)
