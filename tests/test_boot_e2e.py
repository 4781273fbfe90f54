"""Every host's unmodified cloud-config, booted under systemd and cloud-init, on both images.

The boot lab (lab/boot) runs the load-balancer pair and the web nodes as systemd-nspawn containers
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
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from boot_support import StandardLabs, require_boot_capabilities
from iam_support import HostPolicies, bind, host_policies, instance_context

from components.database_bootstrap import app_secret_name
from components.readiness_wait import ReadinessSpec, read_report, userdata_sha256
from components.rendered_hosts import APP_USERNAME, readiness_report, render_hosts
from lab import checks, mariadb
from lab.boot import database, images, inspect, metadata, network, seed, standins
from lab.boot.__main__ import timings_table
from lab.boot.bootlab import PREVIOUS_INSTANCE, BootLab
from lab.boot.calls import Call, classify_all
from lab.boot.containers import Container
from lab.boot.policy import Decision, Request, evaluate
from lab.boot.standins import MOTO_ACCOUNT
from lab.boot.state import ROOT, STATE_VARIABLE, State
from tools.mocked_program import run_program
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
PERSISTENT_FILES = ("etc/web-app/rds-ca.pem", "opt/web-app/web_app/__init__.py", "etc/machine-id")


# Debian 12 last: test_boot_pair goes on with that lab (boot_support.StandardLabs).
@pytest.fixture(scope="module", params=sorted(images.SUITES, key=lambda s: s == "bookworm"))
def booted(
    request: pytest.FixtureRequest, standard_boot_labs: StandardLabs
) -> tuple[BootLab, State]:
    """One boot lab per image: the pair + 2 web nodes + the stand-ins, up and serving."""
    require_boot_capabilities()
    lab = standard_boot_labs.get(str(request.param))
    return lab, lab.load()


def containers(lab: BootLab, state: State) -> list[tuple[str, Container]]:
    return [(host.role, lab.container(host)) for host in state.hosts]


def web_nodes(state: State) -> list[str]:
    return [host.name for host in state.hosts if host.role == "web"]


def test_each_seed_is_the_userdata_pulumi_sends_byte_for_byte(
    booted: tuple[BootLab, State],
) -> None:
    lab, state = booted
    rendered = render_hosts(state.settings_object(), state.region, MOTO_ACCOUNT)
    expected = {**rendered.load_balancers, **rendered.web}
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
    hosts = render_hosts(settings, state.region, MOTO_ACCOUNT)
    rendered = {**hosts.load_balancers, **hosts.web}
    ssm = standins.aws_client("ssm", state.region, lab.authority)
    for host in state.hosts:
        spec = ReadinessSpec(
            host=host.name,
            instance_id=host.instance_id,
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
    """Port 443 of the public address serves from the first boot with the certificate the
    load balancer holding it made for its own name (no domain in the dev stack), and round
    robin holds over HTTPS."""
    lab, state = booted
    holder = lab.public_address()["holder"]
    name = f"{holder}.{state.settings_object().internal_zone}"
    served = tmp_path / "served.pem"
    served.write_text(ssl.get_server_certificate((network.PUBLIC, 443), timeout=5))
    certificate = check_certificate(
        f"https://{name}/", timeout=5, ca_file=str(served), address=network.PUBLIC
    )
    assert certificate.ok, certificate.found
    context = ssl.create_default_context(cafile=str(served))
    answers = [_https_get(network.PUBLIC, name, context) for _ in range(4)]
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


def _semaphores(container: Container, instance_id: str) -> dict[str, float]:
    folder = container.root / "var/lib/cloud/instances" / instance_id / "sem"
    return {name: (folder / name).stat().st_mtime for name in PER_INSTANCE}


def test_a_rebooted_web_node_serves_again_without_rerunning_cloud_init(
    booted: tuple[BootLab, State],
) -> None:
    lab, state = booted
    container = lab.container(state.host("web-1"))
    instance_id = state.host("web-1").instance_id
    semaphores, digests = _semaphores(container, instance_id), _digests(container)

    lab.reboot("web-1")

    rebooted = lab.load().host("web-1")
    container = lab.container(rebooted)
    assert rebooted.boots == 2
    assert _semaphores(container, instance_id) == semaphores, "per-instance modules ran again"
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
    assert status["url"] == f"http://{network.PUBLIC}/"
    assert status["public_address"]["ip"] == network.PUBLIC
    load_balancers = [h.name for h in state.hosts if h.role == "load-balancer"]
    assert status["public_address"]["holder"] in load_balancers, status["public_address"]
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


# --- IAM: every call a host made, checked against its role's rendered policies ---------------
# Last in the module, so the calls of every test above (the app's reads, the reboot) are in.


@pytest.fixture(scope="module")
def lab_host_policies(booted: tuple[BootLab, State]) -> dict[str, HostPolicies]:
    """The program's policies per host (under mocks, the lab's stack config), with what
    AWS computes bound to what the lab's moto computed: the master secret's ARN."""
    lab, state = booted
    stack_config = yaml.safe_load((ROOT / f"Pulumi.{state.stack}.yaml").read_text())["config"]
    run = run_program(
        {k.split(":", 1)[1]: v for k, v in stack_config.items() if k.startswith("web-infra:")},
        stack=state.stack,
        aws_config={k: str(v) for k, v in stack_config.items() if k.startswith("aws:")},
    )
    settings = state.settings_object()
    rds = standins.aws_client("rds", state.region, lab.authority)
    (primary,) = rds.describe_db_instances(DBInstanceIdentifier=settings.db_primary_identifier)[
        "DBInstances"
    ]
    (mocked_primary,) = [
        r for r in run.of_type("aws:rds/instance:Instance") if r.outputs.get("masterUserSecrets")
    ]
    (mocked_app_secret,) = [
        r
        for r in run.of_type("aws:secretsmanager/secret:Secret")
        if r.inputs["name"] == app_secret_name(settings.name_prefix)
    ]
    values = {
        mocked_primary.outputs["masterUserSecrets"][0]["secretArn"]: primary["MasterUserSecret"][
            "SecretArn"
        ],
        mocked_app_secret.outputs["arn"]: lab_secret_arns(lab, state)[
            app_secret_name(settings.name_prefix)
        ],
    }
    hosts = host_policies(run, state.stack)
    assert set(hosts) == {host.name for host in state.hosts}, hosts.keys()
    # The pair's right to take the Elastic IP names the allocation and the host's own instance:
    # the ones the lab's EC2 stand-in made.
    if len(settings.load_balancer_names) > 1:
        mocked_address = run.one("aws:ec2/eip:Eip", "load-balancer").outputs["allocationId"]
        values[mocked_address] = str(lab.public_address()["allocation_id"])
        for host in hosts.values():
            values[host.instance_id] = state.host(host.host).instance_id
    for host in hosts.values():
        host.documents = {name: bind(doc, values) for name, doc in host.documents.items()}
        host.instance_id = state.host(host.host).instance_id  # the lab's, in the context
    return hosts


def public_downloads(region: str) -> set[str]:
    """Where a host may fetch without signing: the CloudWatch agent's public bucket
    (userdata/templates/install-cloudwatch-agent.sh). IAM does not apply to an anonymous GET."""
    return {f"amazoncloudwatch-agent-{region}.s3.{region}.amazonaws.com"}


def lab_secret_arns(lab: BootLab, state: State) -> dict[str, str]:
    """Each secret's name -> its ARN in the lab's secret store."""
    secrets = standins.aws_client("secretsmanager", state.region, lab.authority)
    return {s["Name"]: s["ARN"] for s in secrets.list_secrets()["SecretList"]}


def host_calls(lab: BootLab, state: State) -> list[Call]:
    """Every call signed with a host's instance-role credentials (the lab's own excluded);
    an unsigned one must be a download of a public object."""
    secret_arns = lab_secret_arns(lab, state)
    calls = []
    for entry in lab.recorded_calls():
        if entry["access_key_id"] == standins.ACCESS_KEY_ID:
            continue  # the lab, standing in for the deployer (pulumi up)
        assert entry["host"], f"a call from no host of the lab: {entry}"
        if not entry["signed"]:
            assert entry["method"] in ("GET", "HEAD"), entry
            assert entry["http_host"] in public_downloads(state.region), entry
            continue
        calls += classify_all(entry, MOTO_ACCOUNT, secret_arns)
    return calls


def test_every_host_got_its_roles_credentials_through_imdsv2(
    booted: tuple[BootLab, State], lab_host_policies: dict[str, HostPolicies]
) -> None:
    """No host has keys of its own: botocore on each asked the metadata stand-in for a token,
    then for its role's credentials, and every call it signed names that host's role."""
    lab, state = booted
    requests = lab.metadata_requests()
    calls = host_calls(lab, state)
    for host in state.hosts:
        asked = [(r["method"], r["path"], r["status"]) for r in requests if r["host"] == host.name]
        assert ("PUT", "/latest/api/token", 200) in asked, f"{host.name}: {asked}"
        role = metadata.role_name(state.stack, host.name)
        assert role == lab_host_policies[host.name].role_name, "the lab serves another role"
        credentials = f"/latest/meta-data/iam/security-credentials/{role}"
        assert ("GET", credentials, 200) in asked, f"{host.name}: {asked}"
        assert ("GET", credentials, 401) not in asked, f"{host.name} asked without a token"
        mine = [c for c in calls if c.host == host.name]
        assert mine, f"{host.name} made no AWS call with its role's credentials"
        assert {c.role for c in mine} == {host.role}, mine


def test_every_call_a_host_made_is_allowed_by_its_roles_rendered_policies(
    booted: tuple[BootLab, State], lab_host_policies: dict[str, HostPolicies]
) -> None:
    """The program's policies are enough for the boot and the app, and every call a host makes
    is one its role's policies allow (action and resource ARN, AWS's evaluation rules): a host
    that needs a permission the program does not grant fails here, not on AWS."""
    lab, state = booted
    calls = host_calls(lab, state)
    refused = []
    for call in calls:
        policies = lab_host_policies[str(call.host)]
        context = {
            **instance_context(state.region, MOTO_ACCOUNT, policies.instance_id),
            **call.context,
        }
        decision = evaluate(
            policies.documents.values(), Request(call.action, call.resource, context)
        )
        if decision is not Decision.ALLOWED:
            refused.append(f"{call}: {decision.value}")
    assert not refused, "calls the role's policies do not allow:\n" + "\n".join(refused)
    settings = state.settings_object()
    report = readiness_report(settings, state.region)
    for host in state.hosts:
        made = {(c.action, c.resource) for c in calls if c.host == host.name and c.status < 300}
        parameter = report.parameter(host.name).lstrip("/")
        own_report = f"arn:aws:ssm:{state.region}:{MOTO_ACCOUNT}:parameter/{parameter}"
        assert ("ssm:PutParameter", own_report) in made, f"{host.name}: {made}"
        assert any(action == "s3:GetObject" for action, _ in made), f"{host.name}: {made}"
        if host.role == "web":
            app_secret = lab_secret_arns(lab, state)[app_secret_name(settings.name_prefix)]
            assert ("secretsmanager:GetSecretValue", app_secret) in made, made
    # The pair: the load balancer holding the Elastic IP read its allocation id and associated
    # it with its own instance.
    holder = lab.public_address()["holder"]
    if len(settings.load_balancer_names) > 1:
        mine = {(c.action, c.resource) for c in calls if c.host == holder and c.status < 300}
        parameter = settings.address_parameter.lstrip("/")
        address = f"arn:aws:ssm:{state.region}:{MOTO_ACCOUNT}:parameter/{parameter}"
        assert ("ssm:GetParameter", address) in mine, f"{holder}: {mine}"
        instance = f"arn:aws:ec2:{state.region}:{MOTO_ACCOUNT}:instance/"
        assert ("ec2:AssociateAddress", instance + state.host(holder).instance_id) in mine


# Calls no host may make, made from the hosts with their own role's credentials: moto answers
# them (it checks no resources), the recorder names the host, and the same evaluation as above
# must deny each.
PROBE = """
import json, sys
import boto3
from botocore.config import Config
client = boto3.client(sys.argv[1], region_name=sys.argv[2],
                      config=Config(connect_timeout=5, retries={"total_max_attempts": 1}))
try:
    getattr(client, sys.argv[3])(**json.loads(sys.argv[4]))
    print("answered")
except Exception as error:
    print(type(error).__name__)
"""
NEVER_FROM_A_HOST = [
    pytest.param(
        "web-1",
        "secretsmanager",
        "get_secret_value",
        "master-secret",
        id="web-reads-the-master-secret",
    ),
    pytest.param(
        "web-1",
        "ssm",
        "put_parameter",
        "web-2-report",
        id="web-1-writes-web-2s-report",
    ),
    pytest.param(
        "web-1",
        "ssm",
        "get_parameter",
        "another-stack",
        id="web-reads-another-stacks-parameter",
    ),
    pytest.param(
        "load-balancer-1",
        "secretsmanager",
        "get_secret_value",
        "master-secret",
        id="load-balancer-reads-the-master-secret",
    ),
]


def probe_arguments(lab: BootLab, state: State, what: str) -> dict[str, Any]:
    settings = state.settings_object()
    if what == "master-secret":
        rds = standins.aws_client("rds", state.region, lab.authority)
        (primary,) = rds.describe_db_instances(DBInstanceIdentifier=settings.db_primary_identifier)[
            "DBInstances"
        ]
        return {"SecretId": primary["MasterUserSecret"]["SecretArn"]}
    if what == "web-2-report":
        name = readiness_report(settings, state.region).parameter("web-2")
        ssm = standins.aws_client("ssm", state.region, lab.authority)
        current = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        # The same value: the call is what matters, and web-2's report stays intact.
        return {"Name": name, "Value": current, "Type": "String", "Overwrite": True}
    return {"Name": "/web-infra-prod/db/password"}


@pytest.mark.parametrize(("host", "service", "method", "what"), NEVER_FROM_A_HOST)
def test_a_call_no_host_may_make_is_recorded_and_denied_by_its_roles_policies(
    booted: tuple[BootLab, State],
    lab_host_policies: dict[str, HostPolicies],
    host: str,
    service: str,
    method: str,
    what: str,
) -> None:
    lab, state = booted
    arguments = probe_arguments(lab, state, what)
    started = time.time()
    # The lab's current record: a host rebooted by an earlier test has new PIDs.
    container = lab.container(lab.load().host(host))
    answer = container.execute(
        "python3", "-c", PROBE, service, state.region, method, json.dumps(arguments), timeout=60
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    # The probe's own call: a load balancer of the pair also asks EC2 who holds the Elastic
    # IP and reports to CloudWatch meanwhile, on its own.
    made = [
        call
        for entry in lab.recorded_calls()
        if float(entry["time"]) >= started and entry["host"] == host
        for call in classify_all(entry, MOTO_ACCOUNT)
        if call.action.split(":", 1)[1].lower() == method.replace("_", "")
    ]
    assert made, f"{host}'s call was not recorded ({answer.stdout.strip()})"
    policies = lab_host_policies[host]
    context = instance_context(state.region, MOTO_ACCOUNT, policies.instance_id)
    for call in made:
        decision = evaluate(
            policies.documents.values(), Request(call.action, call.resource, context)
        )
        assert decision is not Decision.ALLOWED, f"{call}: allowed to {policies.role_name}"
