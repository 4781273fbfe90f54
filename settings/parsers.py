"""Value parsers: each turns one raw config value into its typed value, or raises ValueError
whose message says what is allowed.

Changes when what a single value may be changes (a new RDS class family, another e-mail rule).
Parsers are pure and know nothing of key names: the key table (`settings.keys`) and the `aws:*`
keys (`settings.aws_provider`) pair them with keys, and the loader puts the key and the bad
value in front of the message.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

import email_validator

from settings.errors import shown
from settings.instance_types import CPU_ARCHITECTURES, ec2_instance_types, runs_ubuntu

# Every pattern below is applied with `re.fullmatch`: `$` alone lets a trailing newline through.
# The RDS for MySQL classes whose memory (and so connection limit) the program knows.
DB_INSTANCE_CLASS = re.compile(
    r"db\.(t3|t4g)\.(micro|small|medium|large|xlarge|2xlarge)"
    r"|db\.(m5d?|m6gd?|m6i(d|n|dn)?|m7gd?|m7i|m8gd?|r5[bd]?|r6gd?|r6i(d|n|dn)?|r7gd?|r7i|r8gd?"
    r"|x2g)\.(large|(2|4|8|12|16|24|32|48)?xlarge)"
)
# A public DNS name: two or more labels of letters, digits and inner hyphens, no wildcard.
_DOMAIN = re.compile(
    r"(?=.{4,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]"
)
# What a mailbox may hold before the @ here: the common subset of RFC 5321, without any
# character a shell, a template or a mail header would read as syntax.
_EMAIL_LOCAL_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?")
HOSTED_ZONE_ID = re.compile(r"Z[A-Z0-9]{4,31}")
# RFC 1918: the only ranges meant for a private network. 127/8, 169.254/16, 100.64/10, 0/8 or
# 240/4 are "private" to Python's ipaddress but are loopback, link-local, carrier NAT, "this
# network" and reserved space, which a VPC cannot or must not use.
RFC1918_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
HSTS_MAX_AGE_LIMIT = 63072000  # two years, Mozilla's recommendation
_AMI_ID = re.compile(r"ami-[0-9a-f]{8}([0-9a-f]{9})?")


def plain_integer(raw: Any) -> int | None:
    """An int from YAML or `pulumi config`, or None: `30.7`, `30.0`, `3_0`, ` 30`, `1e3`,
    `true` and non-ASCII digits are not plain integers (Python's int() takes some of them)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,18}", raw):
        return int(raw)
    return None


def integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        value = plain_integer(raw)
        if value is None or not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return value

    return parse


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError("true or false")


def choice(*allowed: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if not isinstance(raw, str) or raw not in allowed:
            raise ValueError("one of " + ", ".join(repr(a) for a in allowed))
        return str(raw)

    return parse


def matching(pattern: re.Pattern[str], allowed: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if not isinstance(raw, str) or not pattern.fullmatch(raw):
            raise ValueError(allowed)
        return raw

    return parse


def instance_type(example: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        allowed = (
            f"an EC2 instance type such as {example} (families like t3, t4g, m7i, c7g; "
            "a type newer than the locked boto3 needs a boto3 bump)"
        )
        if not isinstance(raw, str) or raw not in ec2_instance_types():
            raise ValueError(allowed)
        if not runs_ubuntu(raw):
            raise ValueError(f"{allowed}; Mac instances boot macOS only, not Ubuntu")
        return raw

    return parse


def vpc_cidr(raw: Any) -> str:
    allowed = (
        "a private IPv4 CIDR in an RFC 1918 range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) "
        "from /16 to /24 with no host bits set, e.g. 10.20.0.0/16"
    )
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}", raw):
        raise ValueError(allowed)
    try:
        network = ipaddress.IPv4Network(raw, strict=True)
    except ValueError:
        raise ValueError(allowed) from None
    if not 16 <= network.prefixlen <= 24 or not any(
        network.subnet_of(private) for private in RFC1918_RANGES
    ):
        raise ValueError(allowed)
    return str(network)


def email(purpose: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        allowed = (
            f"an e-mail address {purpose}, like ops@example.com: letters, digits and . _ % + - "
            "before the @, a domain with a dot after it, no spaces, quotes, scheme (mailto:) or "
            "control characters"
        )
        if not isinstance(raw, str) or len(raw) > 254:
            raise ValueError(allowed)
        local, _, _ = raw.partition("@")
        if not _EMAIL_LOCAL_PART.fullmatch(local):
            raise ValueError(allowed)
        try:
            # Syntax only: a deliverability check would need DNS while the program is built.
            # `test_environment`: the `.test` domain (RFC 2606) is allowed, as the labs' stacks
            # use it with their own ACME server; other special-use domains stay refused.
            checked = email_validator.validate_email(
                raw, check_deliverability=False, allow_smtputf8=False, test_environment=True
            )
        except email_validator.EmailNotValidError as error:
            raise ValueError(f"{allowed} ({error})") from None
        if checked.normalized != raw:
            raise ValueError(f"{allowed}; write it as {checked.normalized}")
        return raw

    return parse


def json_text(raw: str) -> Any:
    """JSON from a `pulumi config set` string; ValueError when it is not JSON or nests too deep."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def ami_ids(raw: Any) -> dict[str, str]:
    allowed = (
        "a map of CPU architecture to AMI id, e.g. {amd64: ami-0123456789abcdef0} "
        "(`python -m tools.ami --stack <stack> --write` pins Canonical's current images)"
    )
    if isinstance(raw, str):
        try:
            raw = json_text(raw) if raw.strip() else {}
        except ValueError:
            raise ValueError(allowed) from None
    if not isinstance(raw, dict):
        raise ValueError(allowed)
    for architecture, ami in raw.items():
        if architecture not in CPU_ARCHITECTURES:
            raise ValueError(f"{allowed}; architectures are {', '.join(CPU_ARCHITECTURES)}")
        if not isinstance(ami, str) or not _AMI_ID.fullmatch(ami):
            raise ValueError(f"{allowed}; {shown(ami)} is not an AMI id")
    return {str(k): str(v) for k, v in sorted(raw.items())}


def domain(raw: Any) -> str:
    allowed = (
        "a DNS name you control, such as www.example.com (letters, digits, hyphens and dots; "
        "no scheme, path, port or wildcard)"
    )
    if not isinstance(raw, str) or not raw.isascii():
        raise ValueError(allowed)
    name = raw.lower().removesuffix(".")
    if not _DOMAIN.fullmatch(name):
        raise ValueError(allowed)
    return name


def acme_directory_url(raw: Any) -> str:
    allowed = (
        f"an https:// ACME directory URL: {LETS_ENCRYPT_PRODUCTION} (the default) or, "
        f"for trials, Let's Encrypt's staging server {LETS_ENCRYPT_STAGING}"
    )
    # Host, optional port and a path of URL characters only: no spaces, quotes, `$` or `;`.
    url = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/?=&%:@+,-]{0,200}")
    if not isinstance(raw, str) or not url.fullmatch(raw):
        raise ValueError(allowed)
    return raw


def one_of_numbers(allowed: tuple[int, ...]) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        value = plain_integer(raw)
        if value not in allowed:
            raise ValueError("one of " + ", ".join(map(str, allowed)))
        return value

    return parse
