"""Typed, validated settings for the web-infra stack.

Every `web-infra:*` config key is read and checked here, once, before any resource is registered.
The loader is pure (no Pulumi runtime, no AWS): it takes the raw key/value pairs of a stack's
config and returns a frozen `Settings` or raises `SettingsError` naming every bad key, the bad
value and what is allowed. `__main__.py` feeds it `pulumi.Config`; the local lab feeds it the
stack's `Pulumi.<stack>.yaml`, so both agree on what a stack looks like.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "web-infra"

MIN_WEB_NODES = 2  # active-active needs two; fewer is a single point of failure
MAX_WEB_NODES = 20  # HAProxy's rendered backend and the /16 private subnets stay small

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_DB_INSTANCE_CLASS = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
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
    admin_cidrs: tuple[str, ...]
    """`adminCidrs`: CIDRs allowed to SSH to the instances; empty means no SSH at all."""
    ami_id: str | None
    """`amiId`: an AMI to use instead of the latest Ubuntu 24.04 LTS."""
    deletion_protection: bool
    """`deletionProtection`: refuse to delete the database instances."""

    @property
    def name_prefix(self) -> str:
        """A DNS- and RDS-safe prefix for physical names: `web-infra-dev`."""
        return _slug(f"{self.project}-{self.stack}")

    @property
    def internal_zone(self) -> str:
        """The private Route 53 zone that names every host, known before anything exists."""
        return f"{_slug(self.stack)}.{_slug(self.project)}.internal"

    @property
    def web_node_names(self) -> list[str]:
        return [f"web-{i}" for i in range(1, self.web_node_count + 1)]

    @property
    def db_primary_identifier(self) -> str:
        return f"{self.name_prefix}-primary"[:63].rstrip("-")

    @property
    def db_replica_identifier(self) -> str:
        return f"{self.name_prefix}-replica"[:63].rstrip("-")


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug) or "stack"


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


def _admin_cidrs(raw: Any) -> tuple[str, ...]:
    allowed = (
        'a list of IPv4 CIDRs with host bits zero, e.g. ["203.0.113.0/24"]; '
        "0.0.0.0/0 is refused (use SSM Session Manager instead of SSH from anywhere)"
    )
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError:
            raise ValueError(allowed) from None
    if not isinstance(raw, list):
        raise ValueError(allowed)
    cidrs = []
    for item in raw:
        try:
            network = ipaddress.IPv4Network(str(item), strict=True)
        except ValueError:
            raise ValueError(f"{allowed}; {item!r} is not one") from None
        if network.prefixlen == 0:
            raise ValueError(allowed)
        cidrs.append(str(network))
    return tuple(cidrs)


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
    _Key("adminCidrs", "admin_cidrs", (), _admin_cidrs),
    _Key(
        "amiId",
        "ami_id",
        None,
        _matching(_AMI_ID, "an AMI id such as ami-0123456789abcdef0, or leave it unset"),
    ),
    _Key("deletionProtection", "deletion_protection", True, _boolean),
)
KNOWN_KEYS = tuple(key.name for key in _KEYS)


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
    for unknown in sorted(set(values) - set(KNOWN_KEYS)):
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
    if problems:
        raise SettingsError(
            "invalid stack configuration:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nfix it with `pulumi config set {NAMESPACE}:<key> <value>` "
            "or in Pulumi.<stack>.yaml"
        )
    return Settings(project=project, stack=stack, **fields)


def load_stack_file(path: Path, *, stack: str | None = None) -> Settings:
    """Settings from a `Pulumi.<stack>.yaml` file, without the Pulumi CLI (used by the lab)."""
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    ours = {k: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
    stack_name = stack or path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    return load_settings(ours, stack=stack_name)
