"""Pure builders for the Amazon CloudWatch agent on each host: its config, its Prometheus scrape
config, the install step as a cloud-config fragment, and the IAM policy it needs.

Everything is derived from the metric catalogue (`userdata/metric_catalog/`): the agent
publishes exactly the metrics the alarms and the dashboard read, under the names and dimensions
the catalogue gives them, and writes exactly the log groups the catalogue lists for the host's
role. Nothing here calls AWS or reads a Pulumi output, so the result is known at preview.

What runs on a host:
  * load balancer: the agent scrapes HAProxy's Prometheus exporter (`HAPROXY_METRICS`) and
    sends HAProxy's access log and cloud-init's output;
  * web node: prometheus-nginx-exporter (Ubuntu's package) reads Nginx's stub_status
    (`NGINX_STATUS`) and serves it as Prometheus metrics (`NGINX_METRICS`) for the agent; the
    agent also sends Nginx's logs, the app's journal and cloud-init's output;
  * both: the agent's mem and disk inputs;
  * database host (`dbMode: ec2`): only the mem and disk inputs, its data volume's disk too; it
    has no exporter to scrape and ships no log (its replication reports come from
    `database_node.py`, not from the agent).
Every endpoint binds 127.0.0.1: nothing but the agent on the same host can read it.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from userdata.metric_catalog import (
    DATABASE,
    LOAD_BALANCER,
    WEB,
    Catalogue,
    Metric,
    Source,
    log_sources,
    metrics_log_source,
    role_of,
)

HERE = Path(__file__).parent
SCHEMA = HERE / "schemas" / "cloudwatch-agent.schema.json"
INSTALL_SCRIPT_TEMPLATE = HERE / "templates" / "install-cloudwatch-agent.sh"

CONFIG_DIR = "/etc/cloudwatch-agent"
"""This project's files for the agent; the package keeps its own under /opt/aws."""
AGENT_CONFIG_PATH = f"{CONFIG_DIR}/agent.json"
PROMETHEUS_CONFIG_PATH = f"{CONFIG_DIR}/prometheus.yaml"
PROMETHEUS_TARGETS_PATH = f"{CONFIG_DIR}/targets.yaml"
INSTALL_SCRIPT_PATH = "/usr/local/sbin/install-cloudwatch-agent"
NGINX_EXPORTER_DEFAULTS = "/etc/default/prometheus-nginx-exporter"
NGINX_EXPORTER_DROP_IN = "/etc/systemd/system/prometheus-nginx-exporter.service.d/web-infra.conf"
NGINX_EXPORTER_SERVICE = "prometheus-nginx-exporter"

AGENT_SIGNING_KEY_FINGERPRINT = "937616F3450B7D806CBD9725D58167303B789C72"
"""AWS's "Amazon CloudWatch Agent" key (3B789C72), as AWS documents it for package checks."""

SCRAPE_INTERVAL_SECONDS = 30
"""Two samples a minute: the 1-minute alarms see every minute, the p95 has 10 per 5 minutes."""
METRICS_INTERVAL_SECONDS = 60
HEALTH_PATH_FILTER = r'"GET /health HTTP/1\.[01]"'
"""Health checks (HAProxy's every second per node, Route 53's ~0.5/s) are most log lines on a
quiet site; they are left out of the shipped logs (the local files keep them)."""


@dataclass(frozen=True)
class Endpoint:
    """An HTTP endpoint on the host's loopback."""

    host: str
    port: int
    path: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.path}"


HAPROXY_METRICS = Endpoint("127.0.0.1", 8404, "/metrics")
"""HAProxy's exporter, on its loopback-only stats frontend."""
NGINX_STATUS = Endpoint("127.0.0.1", 8080, "/stub_status")
"""Nginx's stub_status, on a loopback-only server block."""
NGINX_METRICS = Endpoint("127.0.0.1", 9113, "/metrics")
"""prometheus-nginx-exporter's own listener."""

HAPROXY_SCOPES = ("frontend", "backend", "server")
"""Ask HAProxy only for what the catalogue reads (no global, listener or resolver sections)."""


def haproxy_exporter_directive(endpoint: Endpoint = HAPROXY_METRICS) -> str:
    """The line haproxy.cfg's loopback-only stats frontend (`bind 127.0.0.1:8404`) needs to
    serve HAProxy's built-in Prometheus exporter at `endpoint.path`."""
    return f"http-request use-service prometheus-exporter if {{ path {endpoint.path} }}"


def nginx_status_server(endpoint: Endpoint = NGINX_STATUS) -> str:
    """The server block nginx.conf needs: stub_status on loopback only, scrapes not logged."""
    return (
        "server {\n"
        f"    listen {endpoint.address};\n"
        "    access_log off;\n"
        f"    location = {endpoint.path} {{\n"
        "        stub_status;\n"
        "    }\n"
        "}\n"
    )


def nginx_exporter_args(status: Endpoint = NGINX_STATUS, listen: Endpoint = NGINX_METRICS) -> str:
    # `--flag=value` reads the same in the exporter's 0.x (Go flags) and 1.x (kingpin) releases.
    return f"--nginx.scrape-uri={status.url} --web.listen-address={listen.address}"


PACKAGES = {
    LOAD_BALANCER: ["gnupg"],
    WEB: ["gnupg", "prometheus-nginx-exporter"],
    DATABASE: ["gnupg"],
}
"""gnupg checks the agent's signature (usually present already); the exporter is Ubuntu's."""


class AgentConfigError(ValueError):
    """A generated agent config breaks the schema; the message names where and why."""


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    return schema


def validate_agent_config(config: dict[str, Any]) -> None:
    """Raise AgentConfigError naming every place where `config` breaks the schema."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
        raise AgentConfigError("the CloudWatch agent config is invalid:\n  " + "\n  ".join(lines))


# --- what a host publishes ---------------------------------------------------------------------


_REGEX_SPECIAL = re.compile(r"([.^$|?*+()\[\]{}\\])")


def _literal(text: str) -> str:
    """`text` as an RE2 regex matching itself; escapes only what RE2 treats as special."""
    return _REGEX_SPECIAL.sub(r"\\\1", text)


def _job(host: str) -> str:
    """The Prometheus job: also the log stream of its metric events."""
    return "haproxy" if role_of(host) == LOAD_BALANCER else f"nginx-{host}"


def _endpoint(host: str) -> Endpoint:
    return HAPROXY_METRICS if role_of(host) == LOAD_BALANCER else NGINX_METRICS


def _prometheus_metrics(catalogue: Catalogue, host: str) -> list[Metric]:
    return [m for m in catalogue.agent_metrics(host) if m.source.prometheus]


def _host_metrics(catalogue: Catalogue, host: str) -> list[Metric]:
    return [m for m in catalogue.agent_metrics(host) if m.source is Source.HOST]


def _label_keys(metrics: Sequence[Metric]) -> list[str]:
    return sorted({key for m in metrics for key, _ in m.dimensions})


def prometheus_targets(host: str) -> list[dict[str, Any]]:
    """The file_sd targets: the host's one exporter, labelled with the host's name (`Node`)."""
    return [{"targets": [_endpoint(host).address], "labels": {"Node": host}}]


def prometheus_config(catalogue: Catalogue, host: str) -> dict[str, Any]:
    """The scrape config the agent reads: one job, its targets from the sd file, and a keep rule
    that lets through exactly the catalogue's series (HAProxy exposes ~550 per scrape; each one
    sent would cost log ingestion, each one kept a custom metric)."""
    metrics = _prometheus_metrics(catalogue, host)
    keys = _label_keys(metrics)
    wanted = sorted(
        {";".join([m.name, *(str(dict(m.dimensions).get(k, "")) for k in keys)]) for m in metrics}
    )
    endpoint = _endpoint(host)
    job: dict[str, Any] = {
        "job_name": _job(host),
        "metrics_path": endpoint.path,
        "file_sd_configs": [{"files": [PROMETHEUS_TARGETS_PATH]}],
        "metric_relabel_configs": [
            {
                "source_labels": ["__name__", *keys],
                "separator": ";",
                "regex": "|".join(_literal(w) for w in wanted),
                "action": "keep",
            }
        ],
    }
    if role_of(host) == LOAD_BALANCER:
        job["params"] = {"scope": list(HAPROXY_SCOPES)}
    return {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s", "scrape_timeout": "10s"},
        "scrape_configs": [job],
    }


def _metric_declarations(metrics: Sequence[Metric], job: str) -> list[dict[str, Any]]:
    """One declaration per dimension set: which series become CloudWatch metrics, and how."""
    by_dimensions: dict[tuple[str, ...], list[str]] = {}
    for metric in metrics:
        names = by_dimensions.setdefault(tuple(k for k, _ in metric.dimensions), [])
        if metric.name not in names:
            names.append(metric.name)
    return [
        {
            "source_labels": ["job"],
            "label_matcher": f"^{_literal(job)}$",
            "dimensions": [list(dimensions)],
            "metric_selectors": [f"^{_literal(name)}$" for name in names],
        }
        for dimensions, names in by_dimensions.items()
    ]


def agent_config(catalogue: Catalogue, host: str, region: str) -> dict[str, Any]:
    """The agent's JSON config for `host` (load-balancer, web-1, ...), validated."""
    shape = catalogue.shape
    if host not in shape.hosts:
        raise ValueError(f"unknown host {host!r}; this stack has {', '.join(shape.hosts)}")
    role = role_of(host)
    collected: dict[str, Any] = {}
    for metric in _host_metrics(catalogue, host):
        plugin, measurement = metric.name.split("_", 1)
        entry = collected.setdefault(plugin, {"measurement": []})
        if measurement not in entry["measurement"]:
            entry["measurement"].append(measurement)
        dimensions = dict(metric.dimensions)
        # The disk input tags its series with path and file system type itself; the host's
        # name is added, since instance ids change when an instance is replaced.
        entry["append_dimensions"] = {"Node": str(dimensions["Node"])}
        if plugin == "disk":
            # Each file system the catalogue watches (a database host's data volume too).
            entry.setdefault("resources", []).append(str(dimensions["path"]))
            entry["drop_device"] = True
    metrics: dict[str, Any] = {"namespace": shape.namespace, "metrics_collected": collected}
    if role == DATABASE:  # no exporter, no log shipped
        metrics_only = {"agent": _agent_section(region), "metrics": metrics}
        validate_agent_config(metrics_only)
        return metrics_only
    files = []
    journald = []
    for source in log_sources(role):
        if source.metrics_transport:
            continue
        entry = {"log_group_name": source.group_name(shape.name_prefix), "log_stream_name": host}
        if source.key.endswith(("/haproxy", "/nginx-access", "/app")):
            entry["filters"] = [{"type": "exclude", "expression": HEALTH_PATH_FILTER}]
        if source.file_path:
            files.append({"file_path": source.file_path, **entry})
        else:
            journald.append({**entry, "units": [source.journald_unit]})
    logs_collected: dict[str, Any] = {"files": {"collect_list": files}}
    if journald:
        logs_collected["journald"] = {"collect_list": journald}
    prometheus = _prometheus_metrics(catalogue, host)
    config: dict[str, Any] = {
        "agent": _agent_section(region),
        "metrics": metrics,
        "logs": {
            "logs_collected": logs_collected,
            "metrics_collected": {
                "prometheus": {
                    "log_group_name": metrics_log_source(role).group_name(shape.name_prefix),
                    "prometheus_config_path": PROMETHEUS_CONFIG_PATH,
                    "emf_processor": {
                        "metric_declaration_dedup": True,
                        "metric_namespace": shape.namespace,
                        "metric_unit": {m.name: m.unit for m in prometheus if m.unit},
                        "metric_declaration": _metric_declarations(prometheus, _job(host)),
                    },
                }
            },
        },
    }
    validate_agent_config(config)
    return config


def _agent_section(region: str) -> dict[str, Any]:
    return {
        "region": region,
        "metrics_collection_interval": METRICS_INTERVAL_SECONDS,
        # No `host` dimension: the catalogue's `Node` names the host instead.
        "omit_hostname": True,
    }


# --- the cloud-config fragment -------------------------------------------------------------------


class _Template(string.Template):
    delimiter = "@@"


def install_script(region: str) -> str:
    """The install script without its comments: they explain the template in the repository,
    and every byte of userdata counts against EC2's 16 KiB."""
    text = _Template(INSTALL_SCRIPT_TEMPLATE.read_text()).substitute(
        region=region,
        agent_config=AGENT_CONFIG_PATH,
        key_fingerprint=AGENT_SIGNING_KEY_FINGERPRINT,
    )
    lines = text.splitlines()
    kept = [lines[0]] + [
        line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")
    ]
    return "\n".join(kept) + "\n"


def nginx_exporter_defaults() -> str:
    """/etc/default/prometheus-nginx-exporter, which the package's unit reads ARGS from."""
    return f'ARGS="{nginx_exporter_args()}"\n'


# The exporter exits while Nginx does not answer yet (first boot): keep starting it.
NGINX_EXPORTER_RESTART = (
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nRestart=always\nRestartSec=5\n"
)


def _compact(document: object) -> str:
    """JSON without spaces: also valid YAML, which is how the Prometheus files are read."""
    return json.dumps(document, separators=(",", ":")) + "\n"


def _file(path: str, content: str, permissions: str | None = None) -> dict[str, Any]:
    """A write_files entry; cloud-init's defaults (root:root, 0644) are left implicit to save
    userdata bytes."""
    entry = {"path": path, "content": content}
    if permissions:
        entry["permissions"] = permissions
    return entry


def cloud_config_fragment(catalogue: Catalogue, host: str, region: str) -> dict[str, Any]:
    """What to merge into `host`'s cloud-config: extend `packages`, `write_files` and `runcmd`
    with these lists, the runcmd entries after HAProxy or Nginx has been (re)started.

    Files are written before packages are installed (not deferred): the exporter's defaults
    must be in place when its package first starts it, so that it never listens on anything
    but loopback (cloud-init installs with --force-confold, which keeps them)."""
    role = role_of(host)
    config = agent_config(catalogue, host, region)
    write_files = [_file(AGENT_CONFIG_PATH, _compact(config))]
    if role != DATABASE:  # a database host has no exporter to scrape
        write_files += [
            _file(PROMETHEUS_CONFIG_PATH, _compact(prometheus_config(catalogue, host))),
            _file(PROMETHEUS_TARGETS_PATH, _compact(prometheus_targets(host))),
        ]
    write_files.append(_file(INSTALL_SCRIPT_PATH, install_script(region), permissions="0755"))
    runcmd: list[list[str]] = []
    if role == WEB:
        write_files += [
            _file(NGINX_EXPORTER_DEFAULTS, nginx_exporter_defaults()),
            _file(NGINX_EXPORTER_DROP_IN, NGINX_EXPORTER_RESTART),
        ]
        runcmd += [
            ["systemctl", "daemon-reload"],
            ["systemctl", "restart", NGINX_EXPORTER_SERVICE],
        ]
    runcmd.append([INSTALL_SCRIPT_PATH])
    return {"packages": list(PACKAGES[role]), "write_files": write_files, "runcmd": runcmd}


def merge_fragment(document: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """A copy of the cloud-config `document` with the fragment's lists appended to its own
    (packages the document already lists are not repeated)."""
    merged = dict(document)
    for key, items in fragment.items():
        present = list(merged.get(key, []))
        merged[key] = present + [i for i in items if key != "packages" or i not in present]
    return merged


# --- IAM -----------------------------------------------------------------------------------------


def publish_metrics_statement(namespace: str) -> dict[str, Any]:
    """PutMetricData into the stack's namespace and nowhere else (it cannot be limited by
    resource, only by namespace)."""
    return {
        "Sid": "PublishHostMetricsToTheStackNamespace",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
    }


def metrics_only_policy(namespace: str) -> str:
    """The IAM policy (JSON) of hosts that publish metrics and ship no log: the database hosts'
    agent (memory, disks) and their replication reports. No logs and no EC2 permission, as
    `agent_policy` explains."""
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [publish_metrics_statement(namespace)]}, indent=2
    )


def agent_policy(namespace: str, log_group_arns: Sequence[str]) -> str:
    """The least-privilege IAM policy (JSON) for the agent on one role's hosts.

    `log_group_arns`: the role's log groups (`arn:aws:logs:<region>:<account>:log-group:<name>`,
    as `aws.cloudwatch.LogGroup.arn` gives them). The agent creates its streams and writes
    events there and nowhere else; it creates no group (the program does, with a retention) and
    sets no retention. PutMetricData cannot be limited by resource, only by namespace. No EC2
    permission: the config appends no `${aws:...}` dimension, which is when the agent would
    call ec2:DescribeTags or ec2:DescribeVolumes."""
    if not log_group_arns:
        raise ValueError("agent_policy needs the role's log group ARNs; got none")
    bad = [arn for arn in log_group_arns if not re.match(r"^arn:aws[\w-]*:logs:", arn)]
    if bad:
        raise ValueError(f"not CloudWatch Logs group ARNs: {bad}")
    groups = [arn.removesuffix(":*") for arn in log_group_arns]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                publish_metrics_statement(namespace),
                {
                    "Sid": "WriteTheRolesOwnLogGroups",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    # `<group>:*` is how CloudWatch Logs names the group's streams in IAM.
                    "Resource": [arn for g in groups for arn in (g, f"{g}:*")],
                },
            ],
        },
        indent=2,
    )
