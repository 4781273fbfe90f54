"""The readiness handshake, both ends, against moto standing in for AWS.

A host runs `userdata/scripts/report_ready.py` (the shipped file, with the system Python as on
the instances); the program's gate (`components/readiness_wait.py`) waits for its report. These
tests run both for real against moto's server, and the gate's provider as Pulumi's
dynamic-provider process loads it: deserialised in a fresh interpreter.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pulumi.dynamic.dynamic import serialize_provider

from components.by_value import by_value
from components.readiness_wait import (
    AwsClients,
    HostNotReadyError,
    ReadinessProvider,
    ReadinessSpec,
    userdata_sha256,
    wait_for_report,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "userdata" / "scripts" / "report_ready.py"
REGION = "eu-west-1"
PARAMETER = "/web-infra-test/ready/web-1"
USERDATA = "#cloud-config\nhostname: web-1\n"


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    """moto's server on loopback; every boto3 client here and in children talks to it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID")}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def ssm(aws: str) -> Any:
    client = boto3.client("ssm", region_name=REGION)
    client.put_parameter(Name=PARAMETER, Value="{}", Type="String", Overwrite=True)
    return client


@pytest.fixture
def healthy_service() -> Iterator[str]:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()


def boot_files(tmp_path: Path, instance_id: str) -> list[str]:
    """What cloud-init leaves on a host: its raw userdata and its instance id."""
    (tmp_path / "user-data.txt").write_text(USERDATA)
    (tmp_path / "instance-id").write_text(instance_id + "\n")
    return [
        "--userdata-file",
        str(tmp_path / "user-data.txt"),
        "--instance-id-file",
        str(tmp_path / "instance-id"),
    ]


def report_ready(
    check_url: str, extra: list[str], timeout: float = 5, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The shipped script, run by the machine's own Python 3 as cloud-init runs it (`env`:
    its environment, else this process's)."""
    command = [
        "/usr/bin/python3",
        str(SCRIPT),
        "--parameter",
        PARAMETER,
        "--region",
        REGION,
        "--check-url",
        check_url,
        "--timeout",
        str(timeout),
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def clients() -> AwsClients:
    """The gate's clients, talking to moto."""
    return AwsClients(boto3.Session, REGION)


def spec(instance_id: str, timeout: float = 3) -> ReadinessSpec:
    return ReadinessSpec("web-1", instance_id, PARAMETER, userdata_sha256(USERDATA), timeout)


def test_a_host_that_serves_opens_exactly_its_own_gate(
    ssm: Any, healthy_service: str, tmp_path: Path
) -> None:
    result = report_ready(healthy_service, boot_files(tmp_path, "i-0new"))
    assert result.returncode == 0, result.stderr
    report = json.loads(ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"])
    assert report["instance_id"] == "i-0new"
    assert report["userdata_sha256"] == hashlib.sha256(USERDATA.encode()).hexdigest()
    assert wait_for_report(spec("i-0new"), clients())["ready_at"] == report["ready_at"]
    # The lab hands in one SSM client of its own.
    assert wait_for_report(spec("i-0new"), ssm)["ready_at"] == report["ready_at"]
    # The same report does not open the gate of another instance with the same userdata
    # (an image bump replaces an instance without changing its userdata).
    with pytest.raises(HostNotReadyError, match=r"web-1 \(instance i-0other\) did not report"):
        wait_for_report(spec("i-0other", timeout=0.1), clients(), sleep=lambda _: None)


def test_a_host_whose_service_never_answers_does_not_report(ssm: Any, tmp_path: Path) -> None:
    result = report_ready("http://127.0.0.1:9/health", boot_files(tmp_path, "i-0dead"), timeout=1)
    assert result.returncode == 1
    assert "did not answer within 1 s; not reporting ready" in result.stderr
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == "{}"


def test_an_unreachable_aws_does_not_hold_up_the_end_of_boot(
    healthy_service: str, tmp_path: Path
) -> None:
    """Measured in the boot lab: with SSM unreachable, boto's own retries made the report block
    cloud-init for 394 s. The report is bounded by its own deadline."""
    started = time.monotonic()
    result = report_ready(
        healthy_service,
        ["--write-deadline", "3", *boot_files(tmp_path, "i-0lonely")],
        env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},  # nothing listens there
    )
    assert result.returncode == 2, result.stderr
    assert "writing /web-infra-test/ready/web-1 failed" in result.stderr
    assert time.monotonic() - started < 20


def test_a_report_from_the_right_instance_with_other_userdata_does_not_open_the_gate(
    ssm: Any, healthy_service: str, tmp_path: Path
) -> None:
    """A host still running the userdata it had before (a change not yet applied, or a report
    left over from its previous boot) must not pass for one running the new userdata."""
    result = report_ready(healthy_service, boot_files(tmp_path, "i-0new"))
    assert result.returncode == 0, result.stderr
    newer = ReadinessSpec(
        "web-1", "i-0new", PARAMETER, userdata_sha256(USERDATA + "# changed\n"), 0.1
    )
    with pytest.raises(HostNotReadyError, match=r"web-1 \(instance i-0new\) did not report"):
        wait_for_report(newer, clients(), sleep=lambda _: None)
    assert wait_for_report(spec("i-0new"), clients())["instance_id"] == "i-0new"


def test_a_gate_that_times_out_names_the_host_and_where_to_look(ssm: Any) -> None:
    ticks = iter(range(0, 10_000, 5))
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(
            spec("i-0slow", timeout=900), clients(), clock=lambda: next(ticks), sleep=lambda _: None
        )
    message = str(error.value)
    assert "web-1 (instance i-0slow) did not report that it serves within 15 min" in message
    assert "the last report there: none" in message
    assert "keeps serving" in message
    assert "aws ec2 get-console-output --instance-id i-0slow" in message
    assert "aws ssm start-session --target i-0slow" in message
    assert "web-infra:readinessTimeoutMinutes" in message


def test_a_gate_stops_early_when_its_instance_died(ssm: Any) -> None:
    """An instance that was terminated (or stopped) will never report: the gate says so at once
    instead of waiting out a 15-minute timeout."""
    ec2 = boto3.client("ec2", region_name=REGION)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (instance,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    props = {
        "host": "web-1",
        "instance_id": instance["InstanceId"],
        "private_ip": "10.20.128.11",
        "userdata_sha256": userdata_sha256(USERDATA),
        "parameter_name": PARAMETER,
        "region": REGION,
        "profile": "",
        "timeout_seconds": 600,
    }
    with pytest.raises(HostNotReadyError, match="is terminated and cannot become ready"):
        ReadinessProvider().create(props)


def test_the_provider_works_as_pulumis_dynamic_provider_process_loads_it(
    ssm: Any, healthy_service: str, tmp_path: Path
) -> None:
    """The engine deserialises the provider in a separate process started in the project
    directory; the provider must load there and create the gate against AWS."""
    assert report_ready(healthy_service, boot_files(tmp_path, "i-0abc")).returncode == 0
    serialized = serialize_provider(by_value(ReadinessProvider)())
    props = {
        "host": "web-1",
        "instance_id": "i-0abc",
        "private_ip": "10.20.128.11",
        "userdata_sha256": userdata_sha256(USERDATA),
        "parameter_name": PARAMETER,
        "region": REGION,
        "profile": "",
        "timeout_seconds": 5,
    }
    program = (
        "import base64, json, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.argv[1]))\n"
        "result = provider.create(json.loads(sys.argv[2]))\n"
        "print(json.dumps({'id': result.id, 'outs': result.outs}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, serialized, json.dumps(props)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["id"] == "web-1/i-0abc"
    assert created["outs"]["private_ip"] == "10.20.128.11"
    assert created["outs"]["ready_at"]
    # What lands in the state: code and constants, never the deployer's credentials.
    assert b"testing" not in base64.b64decode(serialized)


def test_only_a_new_host_or_boot_makes_the_gate_wait_again() -> None:
    provider = ReadinessProvider()
    old = {
        "host": "web-1",
        "instance_id": "i-1",
        "userdata_sha256": "a",
        "parameter_name": "p",
        "timeout_seconds": 900,
        "__provider": "old code",
    }
    same = provider.diff("id", old, {**old, "__provider": "new code"})
    assert not same.changes, "a new provider version alone must not wait on every host"
    for key in ("instance_id", "userdata_sha256"):
        assert provider.diff("id", old, {**old, key: "other"}).replaces == [key]
    slower = provider.diff("id", old, {**old, "timeout_seconds": 1800})
    assert slower.changes
    assert not slower.replaces
