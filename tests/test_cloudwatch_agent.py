"""The CloudWatch agent's config, install step and IAM policy, checked as data, by the schema,
by cloud-init and by running the install script against stand-ins for curl, gpg and dpkg."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_harness import shape
from system_tools import require

from components.rendered_hosts import userdata_for
from settings import load_settings
from settings.web_tier import MAX_WEB_NODES
from userdata import cloud_config, load_balancer_config
from userdata.cloudwatch_agent import (
    AGENT_CONFIG_PATH,
    AGENT_SIGNING_KEY_FINGERPRINT,
    HAPROXY_METRICS,
    INSTALL_SCRIPT_PATH,
    NGINX_EXPORTER_DEFAULTS,
    NGINX_METRICS,
    PROMETHEUS_CONFIG_PATH,
    PROMETHEUS_TARGETS_PATH,
    AgentConfigError,
    agent_config,
    agent_policy,
    cloud_config_fragment,
    install_script,
    metrics_only_policy,
    prometheus_config,
    validate_agent_config,
)
from userdata.metric_catalog import LOAD_BALANCER, catalogue, log_sources

REGION = "eu-west-1"


@pytest.mark.parametrize("count", [2, MAX_WEB_NODES])
def test_every_host_config_passes_the_schema(count: int) -> None:
    stack = catalogue(shape(count))
    for host in stack.shape.hosts:
        validate_agent_config(agent_config(stack, host, REGION))


def broken(change: str) -> dict[str, Any]:
    config = copy.deepcopy(agent_config(catalogue(shape(2)), "web-1", REGION))
    if change == "misspelt key":
        config["logs"]["logs_collected"]["files"]["collect_list"][0]["log_group"] = "/x"
    elif change == "wrong type":
        config["agent"]["metrics_collection_interval"] = "60s"
    elif change == "no region":
        del config["agent"]["region"]
    elif change == "bad log group name":
        config["logs"]["logs_collected"]["files"]["collect_list"][0]["log_group_name"] = "a b"
    elif change == "unknown input":
        config["metrics"]["metrics_collected"]["memory"] = {"measurement": ["used_percent"]}
    return config


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("misspelt key", "logs/logs_collected/files/collect_list/0: Additional properties"),
        ("wrong type", "agent/metrics_collection_interval: '60s' is not of type 'integer'"),
        ("no region", "agent: 'region' is a required property"),
        ("bad log group name", "collect_list/0/log_group_name: 'a b' does not match"),
        ("unknown input", "metrics/metrics_collected: Additional properties"),
    ],
)
def test_a_broken_config_is_refused_with_its_path(change: str, where: str) -> None:
    with pytest.raises(AgentConfigError) as error:
        validate_agent_config(broken(change))
    assert where in str(error.value)


def test_each_role_ships_exactly_its_own_log_groups() -> None:
    stack = catalogue(shape(3))
    for host, role in ((LOAD_BALANCER, "load-balancer"), ("web-3", "web")):
        config = agent_config(stack, host, REGION)
        logs = config["logs"]
        shipped = {e["log_group_name"] for e in logs["logs_collected"]["files"]["collect_list"]}
        journald = logs["logs_collected"].get("journald", {"collect_list": []})
        shipped |= {e["log_group_name"] for e in journald["collect_list"]}
        shipped.add(logs["metrics_collected"]["prometheus"]["log_group_name"])
        assert shipped == {s.group_name("web-infra-dev") for s in log_sources(role)}
        streams = {e["log_stream_name"] for e in logs["logs_collected"]["files"]["collect_list"]}
        assert streams == {host}, "one stream per host, named after it"
    web = agent_config(stack, "web-3", REGION)["logs"]["logs_collected"]
    assert web["journald"]["collect_list"][0]["units"] == ["web-app.service"]


def test_the_scrape_keeps_only_the_catalogue_series_for_every_node() -> None:
    config = prometheus_config(catalogue(shape(5)), LOAD_BALANCER)
    (job,) = config["scrape_configs"]
    assert job["params"] == {"scope": ["frontend", "backend", "server"]}
    (rule,) = job["metric_relabel_configs"]
    assert rule["action"] == "keep"
    assert rule["source_labels"] == ["__name__", "code", "proxy", "server"]
    alternatives = rule["regex"].split("|")
    assert "haproxy_server_http_responses_total;5xx;web;web-5" in alternatives
    assert "haproxy_frontend_http_requests_total;;http;" in alternatives
    assert len(alternatives) == 4 + 5


def test_nothing_listens_beyond_loopback() -> None:
    stack = catalogue(shape(2))
    for host in stack.shape.hosts:
        fragment = cloud_config_fragment(stack, host, REGION)
        files = {f["path"]: f["content"] for f in fragment["write_files"]}
        targets = yaml.safe_load(files[PROMETHEUS_TARGETS_PATH])
        assert all(t.startswith("127.0.0.1:") for entry in targets for t in entry["targets"])
    fragment = cloud_config_fragment(stack, "web-1", REGION)
    web = {f["path"]: f["content"] for f in fragment["write_files"]}
    assert web[NGINX_EXPORTER_DEFAULTS] == (
        'ARGS="--nginx.scrape-uri=http://127.0.0.1:8080/stub_status '
        '--web.listen-address=127.0.0.1:9113"\n'
    )
    assert HAPROXY_METRICS.host == NGINX_METRICS.host == "127.0.0.1"


def test_fragment_files_parse_back_to_the_built_configs() -> None:
    stack = catalogue(shape(2))
    fragment = cloud_config_fragment(stack, LOAD_BALANCER, REGION)
    files = {f["path"]: f for f in fragment["write_files"]}
    built = agent_config(stack, LOAD_BALANCER, REGION)
    assert json.loads(files[AGENT_CONFIG_PATH]["content"]) == built
    scrape = prometheus_config(stack, LOAD_BALANCER)
    assert yaml.safe_load(files[PROMETHEUS_CONFIG_PATH]["content"]) == scrape
    assert files[INSTALL_SCRIPT_PATH]["permissions"] == "0755"
    assert fragment["runcmd"][-1] == [INSTALL_SCRIPT_PATH]
    assert fragment["packages"] == ["gnupg"]
    web = cloud_config_fragment(stack, "web-2", REGION)
    assert web["packages"] == ["gnupg", "prometheus-nginx-exporter"]
    assert web["runcmd"] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", "prometheus-nginx-exporter"],
        [INSTALL_SCRIPT_PATH],
    ]


@pytest.fixture(scope="module")
def largest() -> tuple[str, dict[str, str], dict[str, str]]:
    """The biggest documents the program makes (20 nodes, a long stack name), with the agent
    merged in (and its bigger files offloaded to S3), by host."""
    settings = load_settings(
        {"webNodeCount": MAX_WEB_NODES, "dbInstanceClass": "db.r6g.large"},
        stack="production-eu-central",
    )
    region = "ap-southeast-2"
    load_balancer, web = userdata_for(settings, region, "123456789012")
    merged = {LOAD_BALANCER: load_balancer, **web}
    return region, merged, merged


def test_merged_userdata_stays_under_ec2s_limit(
    largest: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    """render() refuses a document over 16 KiB; this keeps a margin for what comes next
    (3 KiB: the load-balancer pair's keepalived took one of the 4 kept before)."""
    _, _, after = largest
    for host, text in after.items():
        size = len(text.encode())
        assert size <= cloud_config.EC2_USERDATA_LIMIT - 3072, f"{host}: {size} bytes"
        document = cloud_config.parse(text)
        assert any("install-cloudwatch-agent" in " ".join(step) for step in document["runcmd"])


def test_merged_documents_pass_cloud_init_schema(
    largest: tuple[str, dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    cloud_init = require("cloud-init")
    _, _, after = largest
    for host in (LOAD_BALANCER, "web-1"):
        path = tmp_path / f"{host}.yaml"
        path.write_text(after[host])
        result = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{host}: {result.stdout}{result.stderr}"
        document = cloud_config.parse(after[host])
        steps = document["runcmd"]
        assert steps[-2] == [INSTALL_SCRIPT_PATH], "the agent starts after the services"
        assert steps[-1][1] == "/usr/local/lib/web-infra/report_ready.py", "readiness is last"
        assert document["packages"].count("gnupg") == 1


# --- the database hosts (dbMode: ec2) ----------------------------------------------------------


@pytest.mark.parametrize("host", ["database-1", "database-2"])
def test_a_database_hosts_agent_sends_memory_and_both_disks_and_nothing_else(host: str) -> None:
    """Memory, the root file system and the data volume's, under the host's own `Node`; no
    exporter to scrape and no log to ship, so no Prometheus files and no log group."""
    stack = catalogue(shape(2, database_hosts=True))
    config = agent_config(stack, host, REGION)
    validate_agent_config(config)
    assert set(config) == {"agent", "metrics"}
    collected = config["metrics"]["metrics_collected"]
    assert collected == {
        "mem": {"measurement": ["used_percent"], "append_dimensions": {"Node": host}},
        "disk": {
            "measurement": ["used_percent"],
            "append_dimensions": {"Node": host},
            "resources": ["/", "/srv/database"],
            "drop_device": True,
        },
    }
    assert config["metrics"]["namespace"] == "WebInfra/web-infra-dev"
    fragment = cloud_config_fragment(stack, host, REGION)
    assert [f["path"] for f in fragment["write_files"]] == [AGENT_CONFIG_PATH, INSTALL_SCRIPT_PATH]
    assert json.loads(fragment["write_files"][0]["content"]) == config
    assert fragment["runcmd"] == [[INSTALL_SCRIPT_PATH]]
    assert fragment["packages"] == ["gnupg"]


def test_the_database_hosts_change_no_other_hosts_agent() -> None:
    on_rds, on_hosts = catalogue(shape(2)), catalogue(shape(2, database_hosts=True))
    for host in on_rds.shape.hosts:
        assert agent_config(on_hosts, host, REGION) == agent_config(on_rds, host, REGION), host


# --- IAM -------------------------------------------------------------------------------------

GROUPS = [
    "arn:aws:logs:eu-west-1:123456789012:log-group:/web-infra-dev/web/nginx-access",
    "arn:aws:logs:eu-west-1:123456789012:log-group:/web-infra-dev/web/app:*",
]


def test_policy_allows_only_the_namespace_and_the_roles_groups() -> None:
    policy = json.loads(agent_policy("WebInfra/web-infra-dev", GROUPS))
    metrics, logs = policy["Statement"]
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "WebInfra/web-infra-dev"}
    }
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == [
        GROUPS[0],
        f"{GROUPS[0]}:*",
        GROUPS[1].removesuffix(":*"),
        GROUPS[1],
    ]
    actions = [metrics["Action"], *logs["Action"]]
    assert not any(a.endswith("*") or a.startswith(("ec2:", "iam:")) for a in actions)
    assert "logs:CreateLogGroup" not in actions, "the program creates groups, with a retention"
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])


def test_the_metrics_only_policy_allows_publishing_to_the_namespace_alone() -> None:
    """The database hosts' agent and replication reports: PutMetricData in the stack's
    namespace, no log, no EC2."""
    policy = json.loads(metrics_only_policy("WebInfra/web-infra-dev"))
    (metrics,) = policy["Statement"]
    assert metrics == json.loads(agent_policy("WebInfra/web-infra-dev", GROUPS))["Statement"][0]
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "WebInfra/web-infra-dev"}
    }


@pytest.mark.parametrize(
    ("groups", "message"),
    [([], "needs the role's log group ARNs"), (["arn:aws:s3:::bucket"], "not CloudWatch Logs")],
)
def test_policy_refuses_what_is_not_a_log_group(groups: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agent_policy("WebInfra/x", groups)


# --- the install script, run against stand-ins ------------------------------------------------


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(0o755)


Outcome = tuple[subprocess.CompletedProcess[str], list[str], float]


def run_install(tmp_path: Path, *, curl: str, gpg: str) -> Outcome:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "curl", curl)
    stub(bin_dir, "gpg", gpg)
    stub(bin_dir, "dpkg", 'case "$1" in --print-architecture) echo arm64;; esac')
    script = tmp_path / "install"
    script.write_text(install_script("eu-central-1"))
    calls = tmp_path / "calls"
    calls.touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(tmp_path)}
    started = time.monotonic()
    result = subprocess.run(
        ["/bin/sh", str(script)], capture_output=True, text=True, timeout=30, env=env, check=False
    )
    return result, calls.read_text().splitlines(), time.monotonic() - started


def verifying(signing_key: str, primary_key: str) -> str:
    """A gpg stand-in whose --verify reports a good signature by these keys (status format)."""
    status = f"[GNUPG:] VALIDSIG {signing_key} 2026-01-01 0 0 4 0 1 10 00 {primary_key}"
    return f'case "$*" in *--verify*) echo "{status}";; esac'


WRITE_OUTPUT = 'while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done'


def test_install_gives_up_quietly_when_the_bucket_is_unreachable(tmp_path: Path) -> None:
    """A failed download must not fail or hold the boot: exit 0, one line, nothing installed."""
    result, calls, seconds = run_install(tmp_path, curl="exit 6", gpg="exit 0")
    assert result.returncode == 0
    bucket = "https://amazoncloudwatch-agent-eu-central-1.s3.eu-central-1.amazonaws.com"
    assert f"cannot download {bucket}/ubuntu/arm64/latest/" in result.stderr
    assert "ubuntu/arm64/latest/amazon-cloudwatch-agent.deb" in result.stderr
    assert [c.split()[0] for c in calls] == ["dpkg", "curl"], "stops at the first failure"
    assert "--retry 3 --retry-all-errors --retry-max-time 60 --connect-timeout 5" in calls[1]
    assert "--max-time 120" in calls[1]
    assert seconds < 10


def test_install_refuses_a_package_signed_by_another_key(tmp_path: Path) -> None:
    gpg = verifying("AAAA", "BBBB")
    result, calls, _ = run_install(tmp_path, curl=WRITE_OUTPUT, gpg=gpg)
    assert result.returncode == 0
    assert "the package's signature is not AWS's" in result.stderr
    assert not any(c.startswith("dpkg -i") for c in calls), "nothing unverified is installed"


def test_install_installs_a_package_signed_by_aws(tmp_path: Path) -> None:
    gpg = verifying(AGENT_SIGNING_KEY_FINGERPRINT, AGENT_SIGNING_KEY_FINGERPRINT)
    result, calls, _ = run_install(tmp_path, curl=WRITE_OUTPUT, gpg=gpg)
    assert result.returncode == 0
    assert any(c.startswith("dpkg -i -E ") and c.endswith("/agent.deb") for c in calls), calls
    # The agent's control script is absent here, so the script stops at starting it:
    assert f"the agent refused {AGENT_CONFIG_PATH}" in result.stderr


def test_install_script_is_valid_sh() -> None:
    script = install_script("us-east-1")
    result = subprocess.run(
        ["/bin/sh", "-n"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = install_script("us-east-1").splitlines()
    assert lines[0] == "#!/bin/sh"
    assert not [line for line in lines[1:] if line.lstrip().startswith("#")], "comments stay home"
    assert "region=us-east-1" in lines


def test_the_shipped_configs_serve_what_the_agent_scrapes() -> None:
    """HAProxy's exporter and Nginx's stub_status are where the agent's config looks for them."""
    from userdata import cloud_config  # noqa: PLC0415
    from userdata.cloudwatch_agent import (  # noqa: PLC0415
        HAPROXY_METRICS,
        NGINX_STATUS,
        haproxy_exporter_directive,
        nginx_status_server,
    )

    haproxy = load_balancer_config.haproxy_config("dev.web-infra.internal")
    stats = haproxy[haproxy.index("frontend stats") :]
    assert f"bind {HAPROXY_METRICS.address}\n" in stats
    assert f"    {haproxy_exporter_directive()}\n" in stats
    nginx = cloud_config.render_template(
        "nginx.conf", node_name="web-1", web_port=80, load_balancer_cidr="10.0.0.0/16"
    )
    block = "\n".join("    " + line if line else "" for line in nginx_status_server().splitlines())
    assert block in nginx, "the stub_status server, as the exporter expects it"
    assert NGINX_STATUS.host == "127.0.0.1", "never reachable from outside the host"
