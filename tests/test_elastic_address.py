"""The load-balancer pair's side of the Elastic IP (userdata/scripts/elastic_address.py), against
moto's EC2 and SSM, and the keepalived config it writes, checked by Debian's keepalived.

The boot lab runs all of it for real in containers (tests/test_boot_pair.py); these pin each
decision on its own: who claims, when, and that a split brain ends with one holder.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from system_tools import require

from settings import load_settings
from userdata import cloud_config, load_balancer_config
from userdata.scripts import elastic_address

REGION = "eu-west-1"
PARAMETER = "/web-infra-dev/load-balancer/elastic-ip"
NAMESPACE = "WebInfra/web-infra-dev"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(elastic_address, "POLL_SECONDS", 0.0)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instances = ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=PARAMETER, Value=allocation, Type="String"
        )
        yield {"ec2": ec2, "ids": [i["InstanceId"] for i in instances], "allocation": allocation}


def holder(aws: dict[str, Any]) -> str | None:
    (found,) = aws["ec2"].describe_addresses(AllocationIds=[aws["allocation"]])["Addresses"]
    return found.get("InstanceId") or None  # moto says "" where AWS leaves it out


def host(
    tmp_path: Path, instance_id: str, name: str, *, namespace: str | None = None
) -> argparse.Namespace:
    """One load balancer's view: its instance id file and its VRRP state file; with
    `namespace`, it reports who holds the address there."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "instance-id").write_text(instance_id + "\n")
    return argparse.Namespace(
        parameter=PARAMETER,
        region=REGION,
        state_file=str(folder / "vrrp-state"),
        instance_id_file=str(folder / "instance-id"),
        timeout=1.0,
        namespace=namespace,
        node=name,
    )


def set_state(args: argparse.Namespace, state: str) -> None:
    elastic_address.main(["--state-file", args.state_file, "notify", "INSTANCE", "site", state])


def test_a_backup_never_claims_and_a_master_claims_at_once(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    first = host(tmp_path, aws["ids"][0], "load-balancer-1")
    set_state(first, "BACKUP")
    elastic_address.hold(first, rounds=3)
    assert holder(aws) is None, "a backup left the address alone"
    set_state(first, "MASTER")
    elastic_address.hold(first, rounds=1)
    assert holder(aws) == aws["ids"][0], "the new master took it in its first round"


def test_a_split_brain_ends_with_the_remaining_master_holding_the_address(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both became master while VRRP could not pass; the second took the address last. Once
    VRRP hears both, the second steps down; the first, still master, takes the address back at
    its next periodic check, without a new VRRP transition."""
    first = host(tmp_path, aws["ids"][0], "load-balancer-1")
    second = host(tmp_path, aws["ids"][1], "load-balancer-2")
    set_state(first, "MASTER")
    set_state(second, "MASTER")
    elastic_address.hold(first, rounds=1)
    elastic_address.hold(second, rounds=1)
    assert holder(aws) == aws["ids"][1]
    set_state(second, "BACKUP")
    monkeypatch.setattr(elastic_address, "RECHECK_SECONDS", 0.0)
    elastic_address.hold(first, rounds=2)
    assert holder(aws) == aws["ids"][0], "exactly one holder: the master"
    elastic_address.hold(second, rounds=2)
    assert holder(aws) == aws["ids"][0], "the backup does not take it back"


def test_a_master_retries_until_it_may_take_the_address(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy naming the host's own instance is created after the instance: AWS refuses
    for a while, and the holder keeps asking instead of giving up."""
    first = host(tmp_path, aws["ids"][0], "load-balancer-1")
    set_state(first, "MASTER")
    refusals = iter([True, True, False])
    claim = elastic_address.Address.claim

    def refused_at_first(self: elastic_address.Address) -> elastic_address.Claim:
        if next(refusals):
            raise PermissionError("UnauthorizedOperation: not yet")
        return claim(self)

    monkeypatch.setattr(elastic_address.Address, "claim", refused_at_first)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    elastic_address.hold(first, rounds=4)
    assert holder(aws) == aws["ids"][0]


def reported(metric: str, node: str | None) -> tuple[int, float]:
    """How many values were reported for `metric` by `node` (None: the pair's series; moto
    reads every series of the metric then), and their sum, as CloudWatch (moto) kept them."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = datetime.datetime.now(datetime.UTC)
    metric_id = {
        "Namespace": NAMESPACE,
        "MetricName": metric,
        "Dimensions": [{"Name": "Node", "Value": node}] if node else [],
    }
    found = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": stat.lower(), "MetricStat": {"Metric": metric_id, "Period": 600, "Stat": stat}}
            for stat in ("SampleCount", "Sum")
        ],
        StartTime=now - datetime.timedelta(minutes=5),
        EndTime=now + datetime.timedelta(minutes=5),
    )["MetricDataResults"]
    values = {r["Id"]: sum(r["Values"]) for r in found}
    return int(values["samplecount"]), float(values["sum"])


def test_both_hosts_report_who_holds_the_address_and_a_takeover_is_counted(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    """The first association of an address nobody held is no takeover; the peer taking it from
    the first is one, reported by the host that took it; each host reports 1 or 0."""
    first = host(tmp_path, aws["ids"][0], "load-balancer-1", namespace=NAMESPACE)
    second = host(tmp_path, aws["ids"][1], "load-balancer-2", namespace=NAMESPACE)
    set_state(first, "MASTER")
    set_state(second, "BACKUP")
    elastic_address.hold(first, rounds=1)
    elastic_address.hold(second, rounds=1)
    assert holder(aws) == aws["ids"][0]
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {(m["MetricName"], str(m["Dimensions"])) for m in listed} == {
        ("ElasticIpHeld", str([{"Name": "Node", "Value": "load-balancer-1"}])),
        ("ElasticIpHeld", str([{"Name": "Node", "Value": "load-balancer-2"}])),
        ("ElasticIpHeld", "[]"),
    }, "no takeover when nobody held the address"
    assert reported("ElasticIpHeld", "load-balancer-1") == (1, 1.0)
    assert reported("ElasticIpHeld", "load-balancer-2") == (1, 0.0)
    # Failover: the first stops being master, the second becomes master and takes it.
    set_state(first, "BACKUP")
    set_state(second, "MASTER")
    elastic_address.hold(second, rounds=1)
    elastic_address.hold(first, rounds=1)
    assert holder(aws) == aws["ids"][1]
    assert reported("ElasticIpTakeovers", None) == (1, 1.0), "one, by load-balancer-2"
    # Within the same clock minute: each reported again because what it holds changed.
    assert reported("ElasticIpHeld", "load-balancer-2") == (2, 1.0), "0, then 1 at once"
    assert reported("ElasticIpHeld", "load-balancer-1") == (2, 1.0), "1, then 0 at once"


def test_a_report_is_sent_once_a_minute_unless_something_changed(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = host(tmp_path, aws["ids"][0], "load-balancer-1", namespace=NAMESPACE)
    set_state(first, "MASTER")
    monkeypatch.setattr(elastic_address, "RECHECK_SECONDS", 0.0)  # EC2 asked every round
    minutes = itertools.chain([7, 7, 7], itertools.repeat(8))  # each call: the clock's minute
    monkeypatch.setattr(elastic_address, "minute_now", lambda: next(minutes))
    elastic_address.hold(first, rounds=4)
    assert reported("ElasticIpHeld", "load-balancer-1") == (2, 2.0), "minutes 7 and 8"


def test_a_failing_report_never_stops_the_holding(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CloudWatch refusing (a missing permission, an outage) is logged; the master still
    takes the address, and the takeover it could not report goes with the next report."""
    first = host(tmp_path, aws["ids"][0], "load-balancer-1", namespace=NAMESPACE)
    second = host(tmp_path, aws["ids"][1], "load-balancer-2", namespace=NAMESPACE)
    set_state(first, "MASTER")
    elastic_address.hold(first, rounds=1)
    sent = elastic_address.Reporter.report
    answers = iter([False, True])

    def refused_once(self: elastic_address.Reporter, held: bool) -> bool:
        if next(answers):
            return sent(self, held)
        self.cloudwatch = broken
        result = sent(self, held)
        self.cloudwatch = working
        return result

    class Broken:
        def put_metric_data(self, **_: Any) -> None:
            raise RuntimeError("AccessDenied: cloudwatch:PutMetricData")

    broken, working = Broken(), boto3.client("cloudwatch", region_name=REGION)
    monkeypatch.setattr(elastic_address.Reporter, "report", refused_once)
    monkeypatch.setattr(elastic_address, "RECHECK_SECONDS", 0.0)
    set_state(first, "BACKUP")
    set_state(second, "MASTER")
    elastic_address.hold(second, rounds=2)
    assert holder(aws) == aws["ids"][1], "held despite the failed report"
    assert reported("ElasticIpTakeovers", None) == (1, 1.0), "sent with the next report"
    assert reported("ElasticIpHeld", "load-balancer-2") == (1, 1.0)


def test_the_install_step_makes_the_hold_service_report_as_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step cloud-config runs (`_pair_step`, as rendered) makes `install` write the hold
    service's command with the stack's namespace and the node name (the host's record's first
    label); without `--namespace` nothing reports."""
    written: dict[str, str] = {}
    monkeypatch.setattr(elastic_address, "resolve", lambda name, timeout: "10.20.0.10")
    monkeypatch.setattr(elastic_address, "write_atomically", written.__setitem__)
    listing = '[{"ifname": "ens5", "addr_info": [{"local": "10.20.0.10"}]}]'
    monkeypatch.setattr(
        subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=listing)
    )
    template = tmp_path / "keepalived.conf.template"
    template.write_text("${interface} ${self_address} ${peer_address}\n")
    monkeypatch.setattr(elastic_address, "KEEPALIVED_TEMPLATE", str(template))
    document = rendered_document(first=False)
    (step,) = [s for s in document["runcmd"] if load_balancer_config.ELASTIC_ADDRESS in s]
    assert step[:2] == ["python3", load_balancer_config.ELASTIC_ADDRESS]
    elastic_address.main(step[2:])
    unit = written[elastic_address.HOLD_UNIT]
    assert f"--namespace {NAMESPACE} --node load-balancer-2 hold" in unit
    namespace_at = step.index("--namespace")
    elastic_address.main(step[2:namespace_at] + step[namespace_at + 2 :])
    assert "--namespace" not in written[elastic_address.HOLD_UNIT]


def test_the_template_is_where_cloud_init_writes_it() -> None:
    assert elastic_address.KEEPALIVED_TEMPLATE == load_balancer_config.KEEPALIVED_TEMPLATE


def test_release_waits_for_the_peer_and_gives_up_at_its_timeout(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    first = host(tmp_path, aws["ids"][0], "load-balancer-1")
    second = host(tmp_path, aws["ids"][1], "load-balancer-2")
    set_state(first, "MASTER")
    elastic_address.hold(first, rounds=1)
    first.timeout = 0.3
    assert elastic_address.release(first) == 1, "no peer took it: stops anyway, and says so"
    set_state(second, "MASTER")
    elastic_address.hold(second, rounds=1)
    assert elastic_address.release(first) == 0


def test_notify_records_keepalived_states() -> None:
    """keepalived calls `notify INSTANCE <name> <state> <priority>`."""
    state = Path(f"/tmp/vrrp-state-{uuid.uuid4().hex}")
    try:
        for value in ("MASTER", "FAULT", "BACKUP"):
            elastic_address.main(
                ["--state-file", str(state), "notify", "INSTANCE", "site", value, "150"]
            )
            assert elastic_address.read_state(str(state)) == value
    finally:
        state.unlink(missing_ok=True)
    assert elastic_address.read_state(str(state)) == "BACKUP", "no state yet: not master"


def test_the_interface_is_the_one_holding_the_hosts_address() -> None:
    listing = json.loads(
        '[{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},'
        ' {"ifname": "ens5", "addr_info": [{"local": "10.20.0.10"}]}]'
    )
    assert elastic_address.interface_with("10.20.0.10", listing) == "ens5"
    with pytest.raises(SystemExit, match=r"no interface holds 10\.20\.64\.10"):
        elastic_address.interface_with("10.20.64.10", listing)


def rendered_document(first: bool) -> dict[str, Any]:
    settings = load_settings({}, stack="dev")
    return load_balancer_config.load_balancer_cloud_config(
        "load-balancer-1" if first else "load-balancer-2",
        settings.internal_zone,
        cloud_config.ReadinessReport(settings.readiness_parameter_prefix, REGION),
        pair=load_balancer_config.LoadBalancerPair(
            peer="load-balancer-2" if first else "load-balancer-1",
            first=first,
            address_parameter=settings.address_parameter,
            region=REGION,
            namespace=NAMESPACE,
        ),
    )


def rendered_template(first: bool) -> str:
    document = rendered_document(first)
    (template,) = [
        f for f in document["write_files"] if f["path"] == load_balancer_config.KEEPALIVED_TEMPLATE
    ]
    return cloud_config.file_content(template).decode()


def test_keepalived_accepts_the_config_each_host_writes(tmp_path: Path) -> None:
    """Debian's keepalived checks the config on an interface of a namespace of the test's own
    (it refuses loopback for VRRP), as `elastic_address.py install` does on the host."""
    keepalived, ip = require("keepalived"), require("ip")
    namespace = f"web-infra-keepalived-{uuid.uuid4().hex[:8]}"
    subprocess.run([ip, "netns", "add", namespace], check=True)
    try:

        def inside(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [ip, "netns", "exec", namespace, *command],
                capture_output=True,
                text=True,
                check=False,
            )

        inside(ip, "link", "add", "vrrp0", "type", "veth", "peer", "name", "vrrp1")
        inside(ip, "link", "set", "vrrp0", "up")
        inside(ip, "address", "add", "169.254.99.1/24", "dev", "vrrp0")
        priorities = set()
        for first in (True, False):
            config = tmp_path / f"keepalived-{first}.conf"
            config.write_text(
                elastic_address.keepalived_config(
                    rendered_template(first),
                    interface="vrrp0",
                    self_address="169.254.99.1",
                    peer="169.254.99.2",
                )
            )
            result = inside(keepalived, "--config-test", f"--use-file={config}")
            assert result.returncode == 0, result.stdout + result.stderr
            text = config.read_text()
            assert "unicast_peer {\n        169.254.99.2\n    }" in text
            assert "nopreempt" in text
            assert "advert_int 0.5" in text
            (priority,) = [line.split()[-1] for line in text.splitlines() if " priority " in line]
            priorities.add(priority)
        assert priorities == {"150", "100"}, "the first takes the address when neither holds it"
        # The check can fail: a config without the interface it names is refused.
        broken = tmp_path / "broken.conf"
        broken.write_text(
            elastic_address.keepalived_config(
                rendered_template(True),
                interface="vrrp9",
                self_address="169.254.99.1",
                peer="169.254.99.2",
            )
        )
        assert inside(keepalived, "--config-test", f"--use-file={broken}").returncode != 0
    finally:
        subprocess.run([ip, "netns", "delete", namespace], check=False)
