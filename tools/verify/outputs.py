"""The stack's outputs as `tools.verify` reads them: `parse_outputs` checks the JSON of
`pulumi stack output --json` and names every missing or malformed key, with its value cut short."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.stack_outputs import SECURITY_GROUP_KEYS, STACK_OUTPUTS
from tools.verify.report import cut, shorten

MAX_PORT = 65535

MONITORING_OUTPUTS = (
    "alarm_topic_arn",
    "health_check_alarm_topic_arn",
    "dashboard_url",
    "health_check_id",
)
"""Outputs of the monitoring component; `metrics_namespace` is read too when present."""
# Stacks deployed before HTTPS existed lack these; their absence means "no domain".
HTTPS_KEYS = ("https_enabled", "https_url")
REQUIRED_KEYS = tuple(
    key for key in dict.fromkeys((*STACK_OUTPUTS, *MONITORING_OUTPUTS)) if key not in HTTPS_KEYS
)


class OutputsError(ValueError):
    """The outputs JSON cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class Endpoint:
    """`host:port` of an RDS instance, as the outputs give it."""

    host: str
    port: int

    @property
    def identifier(self) -> str:
        """The DB instance identifier: the host's first label."""
        return self.host.split(".", 1)[0]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MonitoringOutputs:
    """Where the monitoring component's resources are."""

    alarm_topic_arn: str
    health_check_alarm_topic_arn: str
    dashboard_url: str
    health_check_id: str
    metrics_namespace: str | None = None

    @property
    def region(self) -> str:
        """The stack's region, from the dashboard's console URL (`?region=...`)."""
        try:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.dashboard_url).query)
        except ValueError:  # not a URL at all (`[` without `]`): parse_outputs names it
            return ""
        return query.get("region", [""])[0]

    @property
    def dashboard_name(self) -> str:
        """The dashboard's name; the catalogue names it like the stack's name prefix."""
        try:
            fragment = urllib.parse.urlsplit(self.dashboard_url).fragment
        except ValueError:
            return ""
        match = re.fullmatch(r"dashboards(?:/dashboard/|:name=)([^/&]+)", fragment)
        return urllib.parse.unquote(match.group(1)) if match else ""


@dataclass(frozen=True)
class Outputs:
    """The parts of `pulumi stack output --json` that the checks use."""

    url: str
    load_balancer_public_ip: str
    load_balancer_public_dns: str
    web_private_ips: tuple[str, ...]
    db_primary_endpoint: Endpoint
    db_replica_endpoint: Endpoint
    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    security_group_ids: Mapping[str, str]
    monitoring: MonitoringOutputs
    https_enabled: bool = False
    """The site has a domain and a CA's certificate (then `https_url` is https://<domain>)."""
    https_url: str = ""

    @property
    def web_node_names(self) -> tuple[str, ...]:
        """web-1, web-2, ...: the names the nodes answer with in `X-Served-By`."""
        return tuple(f"web-{i}" for i in range(1, len(self.web_private_ips) + 1))


def _monitoring_outputs(
    raw: Mapping[str, Any], string: Callable[[str], str], problems: list[str]
) -> MonitoringOutputs:
    monitoring = MonitoringOutputs(
        alarm_topic_arn=string("alarm_topic_arn"),
        health_check_alarm_topic_arn=string("health_check_alarm_topic_arn"),
        dashboard_url=string("dashboard_url"),
        health_check_id=string("health_check_id"),
        metrics_namespace=raw.get("metrics_namespace") or None,
    )
    for key in ("alarm_topic_arn", "health_check_alarm_topic_arn"):
        value = getattr(monitoring, key)
        if value and not re.fullmatch(r"arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+", value):
            problems.append(f"{key}: expected an SNS topic ARN, got {shorten(value)}")
    if monitoring.dashboard_url and not (monitoring.region and monitoring.dashboard_name):
        problems.append(
            "dashboard_url: expected a CloudWatch console URL with ?region=... and "
            f"#dashboards/dashboard/<name>, got {shorten(monitoring.dashboard_url)}"
        )
    return monitoring


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why `url` cannot be requested (None when it can): the checks would otherwise fail on
    it one by one, or with a traceback, and blame the site."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as error:
        return cut(str(error))
    if parts.scheme not in schemes:
        return f"scheme {shorten(parts.scheme)}"
    if not parts.hostname:
        return "no host name"
    return None


def parse_outputs(text: str) -> Outputs:
    """Validate the JSON of `pulumi stack output --json`; raise `OutputsError` naming every
    missing or malformed key. Keys the checks do not use are ignored."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise OutputsError(f"the outputs are not JSON: {error}") from None
    except RecursionError:
        raise OutputsError("the outputs are nested too deeply to be stack outputs") from None
    if not isinstance(raw, dict):
        raise OutputsError(f"the outputs must be a JSON object, not {type(raw).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise OutputsError(f"the outputs lack key(s): {', '.join(missing)}")
    problems: list[str] = []

    def string(key: str) -> str:
        value = raw[key]
        if isinstance(value, str) and value:
            return value
        problems.append(f"{key}: expected a non-empty string, got {shorten(value)}")
        return ""

    def strings(key: str) -> tuple[str, ...]:
        value = raw[key]
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        problems.append(f"{key}: expected a list of non-empty strings, got {shorten(value)}")
        return ()

    def endpoint(key: str) -> Endpoint:
        value = string(key)
        host, sep, port = value.rpartition(":")
        number = int(port) if re.fullmatch(r"[0-9]{1,5}", port) else 0
        if value and (not sep or not host or not 1 <= number <= MAX_PORT):
            problems.append(
                f"{key}: expected 'host:port' with a port from 1 to {MAX_PORT}, "
                f"got {shorten(value)}"
            )
        return Endpoint(host, number)

    url = string("url")
    why = url_problem(url, ("http", "https")) if url else None
    if why:
        problems.append(f"url: expected an http:// or https:// URL, got {shorten(url)} ({why})")
    groups = raw["security_group_ids"]
    security_group_ids: dict[str, str] = {}
    if not isinstance(groups, dict):
        problems.append(f"security_group_ids: expected an object, got {shorten(groups)}")
    else:
        absent = [key for key in SECURITY_GROUP_KEYS if key not in groups]
        if absent:
            problems.append(f"security_group_ids: lacks key(s): {', '.join(absent)}")
        for key in SECURITY_GROUP_KEYS:
            value = groups.get(key)
            if key in groups and not (isinstance(value, str) and value):
                problems.append(
                    f"security_group_ids.{key}: expected a group id, got {shorten(value)}"
                )
            security_group_ids[key] = value if isinstance(value, str) else ""
    monitoring = _monitoring_outputs(raw, string, problems)
    https_enabled, https_url = _https_outputs(raw, problems)
    outputs = Outputs(
        url=url.rstrip("/"),
        load_balancer_public_ip=string("load_balancer_public_ip"),
        load_balancer_public_dns=string("load_balancer_public_dns"),
        web_private_ips=strings("web_private_ips"),
        db_primary_endpoint=endpoint("db_primary_endpoint"),
        db_replica_endpoint=endpoint("db_replica_endpoint"),
        vpc_id=string("vpc_id"),
        public_subnet_ids=strings("public_subnet_ids"),
        private_subnet_ids=strings("private_subnet_ids"),
        security_group_ids=security_group_ids,
        monitoring=monitoring,
        https_enabled=https_enabled,
        https_url=https_url,
    )
    if problems:
        raise OutputsError("malformed outputs:\n  " + "\n  ".join(problems))
    return outputs


def _https_outputs(raw: Mapping[str, Any], problems: list[str]) -> tuple[bool, str]:
    enabled, url = raw.get("https_enabled", False), raw.get("https_url", "")
    if not isinstance(enabled, bool):
        problems.append(f"https_enabled: expected true or false, got {shorten(enabled)}")
        enabled = False
    why = url_problem(url, ("https",)) if isinstance(url, str) and url else None
    if not isinstance(url, str) or why:
        because = f" ({why})" if why else ""
        problems.append(f"https_url: expected an https:// URL, got {shorten(url)}{because}")
        url = ""
    if enabled and not url:
        problems.append("https_url: required when https_enabled is true")
    return enabled, url.rstrip("/")


def on_web_nodes(outputs: Outputs) -> bool:
    """True when the database runs on web-1 and web-2 (`dbMode: colocated`): its endpoints
    name those nodes' records (`web-1.<zone>:3306`)."""
    return outputs.db_primary_endpoint.identifier.startswith("web-")


def on_rds(outputs: Outputs) -> bool:
    """True when the database is RDS's (`dbMode: rds`): its endpoints are RDS's
    (`<id>.<hash>.<region>.rds.amazonaws.com`), not the database hosts' private records."""
    return outputs.db_primary_endpoint.host.endswith(".rds.amazonaws.com")
