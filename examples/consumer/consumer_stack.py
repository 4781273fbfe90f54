"""web-infra-consumer: a stack that builds on a web-infra stack through a StackReference.

It reads a few of web-infra's stack outputs (exactly those in `CONSUMED_OUTPUTS`) and builds:

- a public Route 53 record for the site: a CNAME to the load balancer's public DNS name, or an
  A record to its Elastic IP (`recordType: A`, for a zone apex);
- a security group, in web-infra's VPC, for a reporting job that reads the MySQL read replica:
  no ingress, and egress only to the database security group on the replica's port;
- stack outputs that hand the replica's endpoint to the reporting team, and say where the site
  answers over HTTPS and whether its certificate is a CA's (web-infra has a domain).

Importing this module registers nothing; `build()` (and `main()`, which `__main__.py` calls)
does. The config keys are read and checked in `load_settings()`, before any resource exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
import pulumi_aws as aws

NAMESPACE = "web-infra-consumer"

# contract: every web-infra stack output this stack reads, in one place. Each one must be a
# key web-infra exports (its STACK_OUTPUTS); tests/test_consumer.py checks both that and that
# every key listed here is really read. `_require_output` refuses any key not listed here.
CONSUMED_OUTPUTS: tuple[str, ...] = (
    "load_balancer_public_dns",
    "load_balancer_public_ip",
    "vpc_id",
    "db_replica_endpoint",
    "security_group_ids",
    "https_url",
    "https_enabled",
)

RECORD_TYPES = ("CNAME", "A")
DEFAULT_RECORD_TYPE = "CNAME"
DEFAULT_RECORD_TTL = 300
MIN_RECORD_TTL = 60
MAX_RECORD_TTL = 86_400

# organization/project/stack. A shorter name would be looked up in *this* project
# (web-infra-consumer), which is never what is meant.
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*){2}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
_DNS_NAME = re.compile(
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)

T = TypeVar("T")


class ConsumerConfigError(ValueError):
    """One or more config values are wrong; the message names each key and what is allowed."""


@dataclass(frozen=True)
class ConsumerSettings:
    """What a web-infra-consumer stack is made of. Each field names its config key."""

    web_infra_stack: str
    """`webInfraStack`: the web-infra stack to read, `organization/project/stack`."""
    zone_id: str
    """`zoneId`: the public Route 53 hosted zone that gets the record."""
    record_name: str
    """`recordName`: the record's name, e.g. `www.example.com`."""
    record_type: str = DEFAULT_RECORD_TYPE
    """`recordType`: `CNAME` (to the load balancer's DNS name) or `A` (to its Elastic IP)."""
    record_ttl: int = DEFAULT_RECORD_TTL
    """`recordTtl`: the record's TTL in seconds, 60 to 86400."""

    def __post_init__(self) -> None:
        problems = []
        if not _STACK_NAME.match(self.web_infra_stack):
            problems.append(
                f"{NAMESPACE}:webInfraStack is {self.web_infra_stack!r}; it must be the fully "
                "qualified organization/project/stack, e.g. acme/web-infra/dev "
                "(organization/web-infra/dev on a self-managed backend)"
            )
        if not _ZONE_ID.match(self.zone_id):
            problems.append(
                f"{NAMESPACE}:zoneId is {self.zone_id!r}; it must be a Route 53 hosted zone id "
                "such as Z0123456789ABCDEFGHIJ"
            )
        if not _DNS_NAME.match(self.record_name) or len(self.record_name.rstrip(".")) > 253:
            problems.append(f"{NAMESPACE}:recordName is {self.record_name!r}, not a DNS name")
        if self.record_type not in RECORD_TYPES:
            problems.append(
                f"{NAMESPACE}:recordType is {self.record_type!r}; it must be one of "
                f"{', '.join(RECORD_TYPES)}"
            )
        if not MIN_RECORD_TTL <= self.record_ttl <= MAX_RECORD_TTL:
            problems.append(
                f"{NAMESPACE}:recordTtl is {self.record_ttl}; it must be "
                f"{MIN_RECORD_TTL} to {MAX_RECORD_TTL} seconds"
            )
        if problems:
            raise ConsumerConfigError("; ".join(problems))


def load_settings(config: pulumi.Config | None = None) -> ConsumerSettings:
    """The stack's `web-infra-consumer:*` config, checked; raises ConsumerConfigError."""
    config = config if config is not None else pulumi.Config(NAMESPACE)
    required = {key: config.get(key) for key in ("webInfraStack", "zoneId", "recordName")}
    missing = [key for key, value in required.items() if not value]
    if missing:
        raise ConsumerConfigError(
            "missing config: "
            + ", ".join(f"{NAMESPACE}:{key}" for key in missing)
            + " (pulumi config set KEY VALUE; see Pulumi.example.yaml)"
        )
    try:
        ttl = config.get_int("recordTtl")
    except pulumi.ConfigTypeError as error:
        raise ConsumerConfigError(str(error)) from None
    return ConsumerSettings(
        web_infra_stack=str(required["webInfraStack"]),
        zone_id=str(required["zoneId"]),
        record_name=str(required["recordName"]),
        record_type=config.get("recordType") or DEFAULT_RECORD_TYPE,
        record_ttl=DEFAULT_RECORD_TTL if ttl is None else ttl,
    )


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """`host:port` (as web-infra exports database endpoints) into its host and port."""
    host, separator, port = endpoint.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"a database endpoint must be host:port, not {endpoint!r}")
    return host, int(port)


def _checked(key: str, value: Any, expected: type[T]) -> T:
    if value is None:
        raise KeyError(
            f"the web-infra stack has no output {key!r}; it is in CONSUMED_OUTPUTS, so "
            "web-infra must export it (is the stack deployed, and the right one?)"
        )
    if not isinstance(value, expected):
        raise TypeError(
            f"web-infra's output {key!r} is a {type(value).__name__}, "
            f"not the {expected.__name__} this stack expects"
        )
    return value


def _require_output(stack: pulumi.StackReference, key: str, expected: type[T]) -> pulumi.Output[T]:
    """One of web-infra's outputs, checked for presence and type when it resolves."""
    if key not in CONSUMED_OUTPUTS:
        raise KeyError(f"{key!r} is not in CONSUMED_OUTPUTS; list it there before reading it")
    return stack.get_output(key).apply(lambda value: _checked(key, value, expected))


def _security_group_id(ids: dict[Any, Any], role: str) -> str:
    group_id = ids.get(role)
    if not isinstance(group_id, str):
        raise KeyError(f"web-infra's output 'security_group_ids' has no {role!r} group: {ids}")
    return group_id


@dataclass(frozen=True)
class Consumer:
    """What `build()` made, for the stack outputs and for tests."""

    web_infra: pulumi.StackReference
    record: aws.route53.Record
    reporting_security_group: aws.ec2.SecurityGroup
    replica_endpoint: pulumi.Output[str]
    replica_host: pulumi.Output[str]
    replica_port: pulumi.Output[int]
    https_url: pulumi.Output[str]
    https_enabled: pulumi.Output[bool]


def build(settings: ConsumerSettings, opts: pulumi.ResourceOptions | None = None) -> Consumer:
    """Register the stack's resources; nothing else in this module does."""
    web_infra = pulumi.StackReference("web-infra", stack_name=settings.web_infra_stack, opts=opts)

    target = (
        _require_output(web_infra, "load_balancer_public_dns", str)
        if settings.record_type == "CNAME"
        else _require_output(web_infra, "load_balancer_public_ip", str)
    )
    record = aws.route53.Record(
        "site",
        zone_id=settings.zone_id,
        name=settings.record_name,
        type=settings.record_type,
        ttl=settings.record_ttl,
        records=[target],
        opts=opts,
    )

    replica_endpoint = _require_output(web_infra, "db_replica_endpoint", str)
    replica = replica_endpoint.apply(parse_endpoint)
    replica_port = replica.apply(lambda host_port: host_port[1])
    database_group_id = _require_output(web_infra, "security_group_ids", dict).apply(
        lambda ids: _security_group_id(ids, "database")
    )
    reporting_security_group = aws.ec2.SecurityGroup(
        "reporting",
        description="Reporting job: MySQL to the web-infra read replica, nothing else",
        vpc_id=_require_output(web_infra, "vpc_id", str),
        # Inline rules make this the whole truth: a rule added by hand is removed by the next
        # `pulumi up` and shown as drift by `pulumi preview` until then.
        ingress=[],
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                description="MySQL to the web-infra database security group (read replica)",
                protocol="tcp",
                from_port=replica_port,
                to_port=replica_port,
                security_groups=[database_group_id],
            )
        ],
        tags={"Name": f"{pulumi.get_project()}-{pulumi.get_stack()}-reporting"},
        opts=opts,
    )

    return Consumer(
        web_infra=web_infra,
        record=record,
        reporting_security_group=reporting_security_group,
        replica_endpoint=replica_endpoint,
        replica_host=replica.apply(lambda host_port: host_port[0]),
        replica_port=replica_port,
        https_url=_require_output(web_infra, "https_url", str),
        https_enabled=_require_output(web_infra, "https_enabled", bool),
    )


def stack_outputs(consumer: Consumer) -> dict[str, pulumi.Output[Any]]:
    """What this stack exports: the site's name and, for the reporting team, the replica."""
    return {
        "site_fqdn": consumer.record.fqdn,
        "reporting_security_group_id": consumer.reporting_security_group.id,
        "db_replica_endpoint": consumer.replica_endpoint,
        "db_replica_host": consumer.replica_host,
        "db_replica_port": consumer.replica_port,
        "site_https_url": consumer.https_url,
        "site_https_enabled": consumer.https_enabled,
    }


def main() -> None:
    """Read and check the config, build, export. Called by `__main__.py`."""
    try:
        settings = load_settings()
    except ConsumerConfigError as error:
        # Stop before any resource is registered, with the message and without a traceback.
        raise pulumi.RunError(str(error)) from None
    for key, value in stack_outputs(build(settings)).items():
        pulumi.export(key, value)
