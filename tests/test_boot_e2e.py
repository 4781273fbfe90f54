"""Every host's unmodified cloud-config, booted under systemd and cloud-init, on both images.

The boot lab (lab/boot) runs the load balancer and the web nodes as systemd-nspawn containers
seeded with the exact userdata `pulumi up` sends, on Debian 12 (the older bracket of Ubuntu
24.04's versions) and Debian 13 (the newer one). These tests guard what the configuration
checks and the process lab cannot see: packages, `runcmd`, deferred `write_files`, the
systemd units and their sandboxing, enabling services, the boot-time downloads (the artifacts
from S3, the RDS CA bundle, the CloudWatch agent's failed one), the readiness report the
rollout waits for, HTTPS on 443, the metrics endpoints, and a reboot.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from boot_support import TEST_STATE, boot_lab, require_boot_capabilities

from components.readiness_gate import ReadinessSpec, read_report, userdata_sha256
from components.web_infrastructure import APP_USERNAME, readiness_report, userdata_for
from lab import checks, mariadb
from lab.boot import database, images, inspect, network, seed, standins
from lab.boot.__main__ import timings_table
from lab.boot.bootlab import PREVIOUS_INSTANCE, STATE_VARIABLE, BootLab, State
from lab.boot.containers import Container
from lab.boot.standins import MOTO_ACCOUNT
from tools.verify import check_certificate
from userdata.cloudwatch_agent import HAPROXY_METRICS, NGINX_METRICS, NGINX_STATUS

# Per-instance modules: they must not run again at a reboot (their semaphores keep their time).
PER_INSTANCE = (
    "config_package_update_upgrade_install",
    "config_write_files",
    "config_write_files_deferred",
    "config_runcmd",
    "config_scripts_user",
)
# State written at the first boot that a reboot must keep.
PERSISTENT_FILES = ("etc/web-app/rds-ca.pem", "opt/web-app/web_app.py", "etc/machine-id")


@pytest.fixture(scope="module", params=images.SUITES)
def booted(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[BootLab, State]]:
    """One boot lab per image: LB + 2 web nodes + the stand-ins, up and serving."""
    require_boot_capabilities()
    image = str(request.param)
    with boot_lab(TEST_STATE / f"e2e-{image}", image=image) as lab:
        yield lab, lab.load()


def containers(lab: BootLab, state: State) -> list[tuple[str, Container]]:
    return [(host.role, lab.container(host)) for host in state.hosts]


def web_nodes(state: State) -> list[str]:
    return [host.name for host in state.hosts if host.role == "web"]


def test_each_seed_is_the_userdata_pulumi_sends_byte_for_byte(
    booted: tuple[BootLab, State],
) -> None:
    lab, state = booted
    load_balancer, web = userdata_for(state.settings_object(), state.region, MOTO_ACCOUNT)
    expected = {"load-balancer": load_balancer, **web}
    for host in state.hosts:
        seeded = (lab.container(host).layer / seed.SEED / "user-data").read_bytes()
        assert seeded == expected[host.name].encode(), f"{host.name}: the seed differs"
    assert set(expected) == {h.name for h in state.hosts}, "a host was not booted"


def test_cloud_init_finishes_on_every_host_without_an_error_or_warning(
    booted: tuple[BootLab, State],
) -> None:
    lab, state = booted
    for _, container in containers(lab, state):
        result = inspect.cloud_init_result(container)
        problems = "\n".join(result.errors + result.log_problems)
        assert result.clean, f"{container.name}: cloud-init {result.status}\n{problems}"


def test_systemd_is_running_with_no_failed_unit_on_every_host(
    booted: tuple[BootLab, State],
) -> None:
    lab, state = booted
    for _, container in containers(lab, state):
        state_now = inspect.system_state(container)
        assert state_now == "running", (
            f"{container.name}: {state_now}; failed: {inspect.failed_units(container)}"
        )


def test_every_hosts_services_are_enabled_and_active(booted: tuple[BootLab, State]) -> None:
    lab, state = booted
    for role, container in containers(lab, state):
        found = inspect.services(container, role)
        assert inspect.services_ok(found), f"{container.name}: {found}"
        assert set(inspect.SERVICES[role]) <= set(found)


def test_the_configs_pass_this_images_own_checkers(booted: tuple[BootLab, State]) -> None:
    """cloud-init schema, haproxy -c and nginx -t of this image's versions, inside the hosts."""
    lab, state = booted
    for role, container in containers(lab, state):
        schema = container.execute(
            "cloud-init", "schema", "--config-file", f"/{seed.SEED}/user-data", "--annotate"
        )
        assert schema.returncode == 0, f"{container.name}: {schema.stdout}{schema.stderr}"
        assert "Valid" in schema.stdout, schema.stdout
        if role == "load-balancer":
            checked = container.execute("haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg")
        else:
            checked = container.execute("nginx", "-t")
        output = checked.stdout + checked.stderr
        assert checked.returncode == 0, f"{container.name}: {output}"
        assert "WARNING" not in output.upper(), f"{container.name}: {output}"


def test_the_load_balancer_rotates_over_every_booted_node(booted: tuple[BootLab, State]) -> None:
    lab, state = booted
    result = checks.check_rotation(lab.url(), web_nodes(state))
    assert result.ok, result.found


def test_each_node_answers_with_its_own_name(booted: tuple[BootLab, State]) -> None:
    _, state = booted
    for host in state.hosts:
        if host.role == "web":
            result = checks.check_served_by(f"http://{host.address}:{host.port}", host.name)
            assert result.ok, result.found


def test_round_robin_reads_through_the_load_balancer(booted: tuple[BootLab, State]) -> None:
    lab, state = booted
    result = checks.check_round_robin(lab.url().rstrip("/"), web_nodes(state), 5)
    assert result.ok, result.found


def test_a_write_is_read_back_from_the_replica(booted: tuple[BootLab, State]) -> None:
    lab, _ = booted
    result = checks.check_read_back_from_replica(lab.url())
    assert result.ok, result.found


def test_the_app_logs_in_as_its_own_user_not_the_master(booted: tuple[BootLab, State]) -> None:
    """The nodes read only the app's secret: every connection they hold on the primary is the
    app's user's (the bootstrap's master login came from the host side and is closed)."""
    lab, _ = booted
    written = checks.check_read_back_from_replica(lab.url())
    assert written.ok, written.found
    primary, _ = database.servers(lab.folder / "databases")
    users = mariadb.sql(
        primary,
        "SELECT DISTINCT USER FROM information_schema.PROCESSLIST "
        f"WHERE HOST LIKE '{database.CLIENTS}' AND USER <> '{mariadb.REPLICATION_USER}'",
    ).stdout.split()
    assert users == [APP_USERNAME], users


def test_every_host_reported_ready_for_its_instance_and_userdata(
    booted: tuple[BootLab, State],
) -> None:
    """What `pulumi up`'s readiness gate waits for: each host's SSM parameter names exactly
    its instance and the digest of exactly the userdata the program rendered for it (it held
    the report of the instance it replaces before)."""
    lab, state = booted
    settings = state.settings_object()
    load_balancer, web = userdata_for(settings, state.region, MOTO_ACCOUNT)
    rendered = {"load-balancer": load_balancer, **web}
    ssm = standins.aws_client("ssm", state.region, lab.authority)
    for host in state.hosts:
        spec = ReadinessSpec(
            host=host.name,
            instance_id=seed.instance_id(host.name),
            parameter_name=readiness_report(settings, state.region).parameter(host.name),
            userdata_sha256=userdata_sha256(rendered[host.name]),
            timeout_seconds=0,
        )
        report = read_report(ssm, spec.parameter_name)
        assert spec.matches(report), f"{host.name}: {report}"
        assert not report["instance_id"].startswith(PREVIOUS_INSTANCE)


def _https_get(address: str, name: str, context: ssl.SSLContext) -> tuple[int, str | None]:
    """GET /health over TLS from `address`, the certificate checked for `name` (SNI too)."""
    raw = socket.create_connection((address, 443), timeout=5)
    connection = http.client.HTTPSConnection(name, 443, context=context, timeout=5)
    connection.sock = context.wrap_socket(raw, server_hostname=name)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Served-By")
    finally:
        connection.close()


def test_https_serves_the_first_boot_certificate_and_rotates(
    booted: tuple[BootLab, State], tmp_path: Path
) -> None:
    """Port 443 serves from the first boot with the certificate the load balancer made for
    its own name (no domain in the dev stack), and round robin holds over HTTPS."""
    _, state = booted
    name = f"load-balancer.{state.settings_object().internal_zone}"
    served = tmp_path / "served.pem"
    served.write_text(ssl.get_server_certificate((network.LOAD_BALANCER, 443), timeout=5))
    certificate = check_certificate(
        f"https://{name}/", timeout=5, ca_file=str(served), address=network.LOAD_BALANCER
    )
    assert certificate.ok, certificate.found
    context = ssl.create_default_context(cafile=str(served))
    answers = [_https_get(network.LOAD_BALANCER, name, context) for _ in range(4)]
    assert [status for status, _ in answers] == [200] * 4, answers
    nodes = [by or "?" for _, by in answers]
    assert sorted(nodes) == sorted(web_nodes(state) * 2), nodes
    assert all(a != b for a, b in itertools.pairwise(nodes)), nodes


def _local_get(container: Container, url: str) -> str:
    """The body of `url` fetched inside the container (with its system Python)."""
    program = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    fetched = container.execute("python3", "-c", program)
    assert fetched.returncode == 0, f"{container.name}: {url}: {fetched.stderr[-500:]}"
    return fetched.stdout


def test_the_metrics_the_agent_scrapes_are_served_on_loopback_only(
    booted: tuple[BootLab, State],
) -> None:
    """HAProxy's exporter on the load balancer; Nginx's stub_status and Debian's
    prometheus-nginx-exporter on every web node; none of them reachable from the network."""
    lab, state = booted
    for host in state.hosts:
        container = lab.container(host)
        if host.role == "load-balancer":
            endpoints = {HAPROXY_METRICS: "haproxy_backend_active_servers"}
        else:
            endpoints = {NGINX_STATUS: "Active connections"}
            endpoints[NGINX_METRICS] = "nginx_http_requests_total"
        for endpoint, expected in endpoints.items():
            assert expected in _local_get(container, endpoint.url), f"{host.name}: {endpoint.url}"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host.address, endpoint.port), timeout=2).close()


def test_the_cloudwatch_agent_install_gives_up_without_holding_the_boot(
    booted: tuple[BootLab, State],
) -> None:
    """AWS's package cannot be downloaded here (its bucket is not in the lab's S3): the
    install script must say so and let the boot finish clean (the cloud-init test above)."""
    lab, state = booted
    for host in state.hosts:
        output = (lab.container(host).root / "var/log/cloud-init-output.log").read_text()
        assert "install-cloudwatch-agent: cannot download https://amazoncloudwatch-agent-" in (
            output
        ), host.name
        assert "this host runs without the CloudWatch agent" in output, host.name


def _digests(container: Container) -> dict[str, str]:
    return {
        path: hashlib.sha256((container.root / path).read_bytes()).hexdigest()
        for path in PERSISTENT_FILES
    }


def _semaphores(container: Container, host: str) -> dict[str, float]:
    folder = container.root / "var/lib/cloud/instances" / seed.instance_id(host) / "sem"
    return {name: (folder / name).stat().st_mtime for name in PER_INSTANCE}


def test_a_rebooted_web_node_serves_again_without_rerunning_cloud_init(
    booted: tuple[BootLab, State],
) -> None:
    lab, state = booted
    container = lab.container(state.host("web-1"))
    semaphores, digests = _semaphores(container, "web-1"), _digests(container)

    lab.reboot("web-1")

    rebooted = lab.load().host("web-1")
    container = lab.container(rebooted)
    assert rebooted.boots == 2
    assert _semaphores(container, "web-1") == semaphores, "per-instance modules ran again"
    assert _digests(container) == digests, "first-boot state was lost"
    assert inspect.cloud_init_status(container) == "done"
    assert inspect.system_state(container) == "running", inspect.failed_units(container)
    found = inspect.services(container, "web")
    assert inspect.services_ok(found), found
    back = checks.wait_for(lambda: checks.check_rotation(lab.url(), web_nodes(state)), 30)
    assert back.ok, back.found


def test_status_json_has_the_labs_shape_and_every_host_up(booted: tuple[BootLab, State]) -> None:
    """`python -m lab.boot status --json`: the process lab's keys, plus cloud-init's result."""
    lab, state = booted
    shown = subprocess.run(
        [sys.executable, "-m", "lab.boot", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, STATE_VARIABLE: str(lab.folder)},
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["url"] == f"http://{network.LOAD_BALANCER}/"
    hosts = {host["name"]: host for host in status["hosts"]}
    expected = {h.name for h in state.hosts} | {"db-primary", "db-replica"}
    assert set(hosts) == expected
    for name, host in hosts.items():
        assert {"name", "role", "address", "port", "state"} <= set(host), name
        assert host["state"] == "up", f"{name}: {host}"
        if host["role"] != "database":
            assert host["cloud_init"]["status"] == "done", f"{name}: {host['cloud_init']}"
    assert status["replication"].startswith("replicating"), status["replication"]


def test_boot_timings_are_reported(
    booted: tuple[BootLab, State], capsys: pytest.CaptureFixture[str]
) -> None:
    """The table `make boot` prints: per host, boot time and cloud-init's slowest modules."""
    lab, state = booted
    table = timings_table(lab)
    for host in state.hosts:
        line = next(row for row in table.splitlines() if row.startswith(host.name + " "))
        assert "package-update-upgrade-install" in line, line
    with capsys.disabled():
        print(f"\n\nboot timings ({state.image}):\n{table}\n")
