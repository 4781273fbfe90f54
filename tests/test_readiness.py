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
import botocore.exceptions
import pytest
from moto.server import ThreadedMotoServer
from pulumi.dynamic.dynamic import serialize_provider

from components import readiness_wait
from components.by_value import by_value
from components.readiness_wait import (
    AwsClients,
    GateError,
    HostNotReadyError,
    ReadinessProvider,
    ReadinessSpec,
    boto3_clients,
    describe,
    read_report,
    record_failure,
    transient,
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
    instead of waiting out a 15-minute timeout. The timeout here is over at the first look too,
    so a gate that missed the instance's state fails at once as well, with the timeout's
    message instead of the reason."""
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
        "timeout_seconds": 0,
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


# --- the gate's rules on their own: fake AWS clients and a fake clock, no AWS stand-in ---


def aws_error(code: str, message: str = "refused", operation: str = "GetParameter") -> Exception:
    error: Exception = botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}}, operation
    )
    return error


class FakeSsm:
    """An SSM client answering `get_parameter` from a script: a value, an exception, or None
    for a parameter that does not exist (yet); `put_parameter` likewise."""

    class exceptions:
        class ParameterNotFound(Exception):
            pass

    def __init__(self, answers: list[Any] | None = None, puts: list[Any] | None = None) -> None:
        self.answers = list(answers or [])
        self.puts = list(puts or [])
        self.written: list[dict[str, Any]] = []
        self.reads = 0

    def get_parameter(self, Name: str) -> dict[str, Any]:
        self.reads += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            raise self.exceptions.ParameterNotFound(Name)
        return {"Parameter": {"Name": Name, "Value": answer}}

    def put_parameter(self, **request: Any) -> dict[str, Any]:
        outcome = self.puts.pop(0) if self.puts else None
        if isinstance(outcome, Exception):
            raise outcome
        self.written.append(request)
        return {"Version": 1}


class FakeEc2:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[list[str]] = []

    def describe_instances(self, InstanceIds: list[str]) -> dict[str, Any]:
        self.asked.append(InstanceIds)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return {"Reservations": []}
        return {"Reservations": [{"Instances": [{"State": {"Name": answer}}]}]}


class Sessions:
    """Session factory for `AwsClients`: each new session hands out the same fake clients and
    is counted, with the region each client was made for."""

    def __init__(self, **services: Any) -> None:
        self.services = services
        self.made = 0
        self.regions: list[str] = []

    def __call__(self) -> Sessions:
        self.made += 1
        return self

    def client(self, service: str, region_name: str) -> Any:
        self.regions.append(region_name)
        return self.services[service]


class Clock:
    def __init__(self, step: float = 0.0, start: float = 0.0) -> None:
        self.now = start  # a monotonic clock starts anywhere
        self.step = step  # time that passes at each look at the clock (an AWS call's time)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        # A wait that never ends fails here rather than running on (every wait here is short).
        assert len(self.sleeps) < 5000, "still waiting after 5000 pauses"


DIGEST = userdata_sha256(USERDATA)
MATCHING = json.dumps({"instance_id": "i-0a", "userdata_sha256": DIGEST, "ready_at": "T1"})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (aws_error("ThrottlingException"), "throttled"),
        (aws_error("SlowDown"), "throttled"),
        (aws_error("RequestLimitExceeded"), "throttled"),
        (aws_error("ExpiredToken"), "expired"),
        (aws_error("RequestExpired"), "expired"),
        (botocore.exceptions.TokenRetrievalError(provider="sso", error_msg="expired"), "expired"),
        (aws_error("InternalError"), "unreachable"),
        (aws_error("ServiceUnavailable"), "unreachable"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://ssm"), "unreachable"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="https://ssm"), "unreachable"),
        (aws_error("AccessDeniedException"), None),
        (aws_error("ParameterNotFound"), None),
        (botocore.exceptions.ClientError({}, "GetParameter"), None),
        (ValueError("not AWS"), None),
    ],
)
def test_only_a_passing_aws_trouble_is_retried(error: Exception, kind: str | None) -> None:
    assert transient(error) == kind


def test_an_aws_error_is_one_line_with_its_code_and_message() -> None:
    assert describe(aws_error("AccessDeniedException", "no ssm:GetParameter")) == (
        "AccessDeniedException: no ssm:GetParameter"
    )
    assert describe(botocore.exceptions.ClientError({}, "GetParameter")) == "error: "
    assert describe(aws_error("X", "m" * 1000)) == "X: " + "m" * 297
    unreachable = describe(botocore.exceptions.EndpointConnectionError(endpoint_url="https://e"))
    assert (
        unreachable == 'EndpointConnectionError: Could not connect to the endpoint URL: "https://e"'
    )
    assert describe(RuntimeError("x" * 1000)) == "RuntimeError: " + "x" * 286


def test_clients_are_made_once_per_session_and_again_after_a_renewal() -> None:
    ssm, ec2 = FakeSsm(["{}"]), FakeEc2("running")
    sessions = Sessions(ssm=ssm, ec2=ec2)
    clients = AwsClients(sessions, "eu-central-1")
    assert clients("ssm") is ssm
    assert clients("ssm") is ssm
    assert clients("ec2") is ec2
    assert (sessions.made, clients.sessions) == (1, 1)
    assert sessions.regions == ["eu-central-1", "eu-central-1"]
    clients.renew()
    assert clients("ec2") is ec2
    assert (sessions.made, clients.sessions) == (2, 2)
    single = AwsClients.single(ssm)
    assert single("ssm") is ssm
    assert single("ec2") is ssm


def test_the_deployers_profile_is_the_one_used() -> None:
    """`aws:profile` reaches the gate: a profile that does not exist is an error, not the
    default credentials silently used instead."""
    with pytest.raises(botocore.exceptions.ProfileNotFound):
        boto3_clients("web-infra-no-such-profile", REGION)("ssm")
    assert boto3_clients("", REGION)("ssm").meta.region_name == REGION


@pytest.mark.parametrize(
    ("answer", "report"),
    [
        (None, {}),
        ("not json", {}),
        ('["i-0a"]', {}),
        ('"i-0a"', {}),
        (MATCHING, json.loads(MATCHING)),
    ],
)
def test_a_missing_or_unreadable_report_is_no_report(answer: str | None, report: Any) -> None:
    assert read_report(FakeSsm([answer]), PARAMETER) == report


def test_the_report_must_name_both_the_instance_and_the_userdata() -> None:
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60)
    assert spec.matches({"instance_id": "i-0a", "userdata_sha256": DIGEST})
    assert not spec.matches({"instance_id": "i-0b", "userdata_sha256": DIGEST})
    assert not spec.matches({"instance_id": "i-0a", "userdata_sha256": "0" * 64})
    assert not spec.matches({"userdata_sha256": DIGEST})
    assert not spec.matches({"instance_id": "i-0a"})


def test_a_gate_polls_every_five_seconds_until_the_report_matches() -> None:
    ssm = FakeSsm([None, "{}", MATCHING])
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60)
    found = wait_for_report(spec, ssm, clock=clock, sleep=clock.sleep)
    assert found["ready_at"] == "T1"
    assert clock.sleeps == [5.0, 5.0]
    assert ssm.reads == 3


def test_after_a_throttled_look_the_next_good_one_polls_at_the_normal_pace_again() -> None:
    ssm = FakeSsm([aws_error("Throttling"), aws_error("Throttling"), "{}", "{}", MATCHING])
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 600)
    wait_for_report(spec, ssm, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [10.0, 20.0, 5.0, 5.0]


def test_a_gate_times_out_exactly_at_its_deadline_and_says_how_long_it_waited() -> None:
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 30)
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(spec, FakeSsm(["{}"]), clock=clock, sleep=clock.sleep)
    assert clock.now == 30.0, "one look at the deadline itself, none after it"
    assert "web-1 (instance i-0a) did not report that it serves within 30 s." in str(error.value)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(119, "119 s"), (120, "2 min"), (900, "15 min"), (7200, "120 min")]
)
def test_the_timeout_is_shown_in_the_unit_a_person_reads(seconds: float, shown: str) -> None:
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, seconds)
    with pytest.raises(HostNotReadyError, match=rf"did not report that it serves within {shown}\."):
        wait_for_report(spec, FakeSsm(["{}"]), clock=clock, sleep=clock.sleep)


def test_a_timeout_shows_the_last_report_and_the_last_aws_trouble() -> None:
    stale = json.dumps({"instance_id": "i-0old", "userdata_sha256": "ab" * 32, "ready_at": "T0"})
    ssm = FakeSsm([stale, aws_error("ThrottlingException", "Rate exceeded")])
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60)
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(spec, ssm, clock=clock, sleep=clock.sleep)
    message = str(error.value)
    assert "within 60 s (the last look at AWS failed: throttled, ThrottlingException: Rate" in (
        message
    )
    assert "the last report there: instance i-0old, userdata sha256 abababababab..., at T0." in (
        message
    )
    assert f"in SSM parameter {PARAMETER} naming this instance and userdata sha256 " in message
    assert f"{DIGEST[:12]}...;" in message


def test_a_look_that_succeeds_again_clears_the_aws_trouble_from_the_message() -> None:
    ssm = FakeSsm([aws_error("Throttling"), "{}"])
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60)
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(spec, ssm, clock=clock, sleep=clock.sleep)
    assert "the last look at AWS failed" not in str(error.value)
    assert "the last report there: none." in str(error.value)


def test_expired_credentials_are_renewed_while_waiting() -> None:
    ssm = FakeSsm([aws_error("ExpiredTokenException"), MATCHING])
    sessions = Sessions(ssm=ssm)
    clients = AwsClients(sessions, REGION)
    clock = Clock()
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60)
    assert wait_for_report(spec, clients, clock=clock, sleep=clock.sleep)["ready_at"] == "T1"
    assert clients.sessions == 2
    assert clock.sleeps == [10.0]


def test_a_throttled_look_does_not_renew_the_session() -> None:
    ssm = FakeSsm([aws_error("Throttling"), MATCHING])
    clients = AwsClients(Sessions(ssm=ssm), REGION)
    clock = Clock()
    wait_for_report(
        ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60),
        clients,
        clock=clock,
        sleep=clock.sleep,
    )
    assert clients.sessions == 1


def test_any_other_aws_error_names_the_host_the_parameter_and_the_permission() -> None:
    ssm = FakeSsm([aws_error("AccessDeniedException", "not allowed")])
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 60)
    with pytest.raises(GateError) as error:
        wait_for_report(spec, ssm, clock=Clock(), sleep=lambda _: None)
    assert str(error.value) == (
        f"web-1 (instance i-0a): reading SSM parameter {PARAMETER} failed "
        "(AccessDeniedException: not allowed), so the gate cannot tell whether it serves. "
        "Check the deployer's permissions (ssm:GetParameter on that parameter) and run "
        "`pulumi up` again."
    )


def test_the_instance_is_looked_at_when_the_wait_starts_then_every_30_seconds() -> None:
    looked: list[float] = []
    clock = Clock()

    def alive(instance_id: str) -> str | None:
        assert instance_id == "i-0a"
        looked.append(clock.now)
        return None

    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 95)
    with pytest.raises(HostNotReadyError):
        wait_for_report(spec, FakeSsm(["{}"]), alive, clock=clock, sleep=clock.sleep)
    assert looked == [0.0, 30.0, 60.0, 90.0]


def test_an_instance_that_cannot_become_ready_ends_the_wait_with_the_reason() -> None:
    clock = Clock()
    answers = iter([None, None, "is stopped and cannot become ready"])
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 900)
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(
            spec, FakeSsm(["{}"]), lambda _: next(answers), clock=clock, sleep=clock.sleep
        )
    assert clock.now == 60.0
    assert str(error.value).startswith(
        "web-1 (instance i-0a) is stopped and cannot become ready.\n"
    )


def props_for(instance_id: str = "i-0a", **extra: Any) -> dict[str, Any]:
    return {
        "host": "web-1",
        "instance_id": instance_id,
        "private_ip": "10.20.128.11",
        "userdata_sha256": DIGEST,
        "parameter_name": PARAMETER,
        "failure_record": "/web-infra-test/gate-failures/web-1",
        "region": REGION,
        "profile": "deployer",
        "timeout_seconds": "0",
        **extra,
    }


def provider_with(sessions: Sessions) -> tuple[ReadinessProvider, list[tuple[str, str]]]:
    made: list[tuple[str, str]] = []

    def clients(profile: str, region: str) -> AwsClients:
        made.append((profile, region))
        return AwsClients(sessions, region)

    return ReadinessProvider(clients), made


def test_a_gate_that_opens_keeps_its_inputs_and_the_hosts_ready_time() -> None:
    provider, made = provider_with(Sessions(ssm=FakeSsm([MATCHING]), ec2=FakeEc2("running")))
    created = provider.create(props_for())
    assert created.id == "web-1/i-0a"
    assert created.outs == {**props_for(), "ready_at": "T1"}
    assert made == [("deployer", REGION)]


@pytest.mark.parametrize("state", ["shutting-down", "terminated", "stopping", "stopped"])
def test_a_gate_whose_instance_is_going_away_fails_and_records_it(state: str) -> None:
    ssm = FakeSsm(["{}"])
    provider, _ = provider_with(Sessions(ssm=ssm, ec2=FakeEc2(state)))
    with pytest.raises(HostNotReadyError) as error:
        # Its timeout is over at the first look too: what is said is why it cannot report.
        provider.create(props_for(timeout_seconds=0))
    message = str(error.value)
    assert message.startswith(f"web-1 (instance i-0a) is {state} and cannot become ready.")
    assert "The failure is recorded in SSM parameter /web-infra-test/gate-failures/web-1" in message
    assert ssm.written == [
        {
            "Name": "/web-infra-test/gate-failures/web-1",
            "Value": "i-0a",
            "Type": "String",
            "Overwrite": True,
        }
    ]


@pytest.mark.parametrize("state", ["pending", "running", None])
def test_a_live_or_unlisted_instance_is_waited_for_until_the_timeout(state: str | None) -> None:
    ec2 = FakeEc2(state)
    provider, _ = provider_with(Sessions(ssm=FakeSsm(["{}"]), ec2=ec2))
    with pytest.raises(HostNotReadyError) as error:
        provider.create(props_for(timeout_seconds=0))
    assert "web-1 (instance i-0a) did not report that it serves within 0 s" in str(error.value)
    assert ec2.asked == [["i-0a"]]


def test_an_instance_check_that_fails_is_no_reason_to_give_up() -> None:
    ssm = FakeSsm(["{}"])
    sessions = Sessions(ssm=ssm, ec2=FakeEc2(aws_error("ExpiredToken", operation="Describe")))
    provider, _ = provider_with(sessions)
    with pytest.raises(HostNotReadyError) as error:
        provider.create(props_for(timeout_seconds=0))
    assert "did not report that it serves within 0 s" in str(error.value)
    assert "cannot become ready" not in str(error.value)
    assert sessions.made == 2, "expired credentials: the next call uses a new session"
    assert [w["Value"] for w in ssm.written] == ["i-0a"]


def test_a_gate_created_before_failures_were_recorded_fails_without_a_record() -> None:
    ssm = FakeSsm(["{}"])
    provider, _ = provider_with(Sessions(ssm=ssm, ec2=FakeEc2("running")))
    with pytest.raises(HostNotReadyError) as error:
        provider.create(props_for(failure_record=""))
    assert "did not report that it serves within 0 s" in str(error.value)
    assert "recorded" not in str(error.value)
    assert ssm.written == []


def test_recording_a_failure_gives_up_after_two_minutes_of_throttling() -> None:
    ssm = FakeSsm(puts=[aws_error("ThrottlingException", operation="PutParameter")] * 20)
    clock = Clock()
    error = record_failure(
        AwsClients.single(ssm), "/r/web-1", "i-0a", clock=clock, sleep=clock.sleep
    )
    assert error is not None
    assert transient(error) == "throttled"
    assert clock.sleeps == [5.0, 10.0, 20.0, 40.0, 60.0]
    assert clock.now == 135.0
    assert ssm.written == []


def test_recording_a_failure_renews_expired_credentials_and_stops_at_a_refusal() -> None:
    ssm = FakeSsm(
        puts=[
            aws_error("ExpiredToken", operation="PutParameter"),
            aws_error("AccessDeniedException", operation="PutParameter"),
        ]
    )
    sessions = Sessions(ssm=ssm)
    clients = AwsClients(sessions, REGION)
    clock = Clock()
    error = record_failure(clients, "/r/web-1", "i-0a", clock=clock, sleep=clock.sleep)
    assert error is not None
    assert describe(error) == "AccessDeniedException: refused"
    assert clients.sessions == 2
    assert clock.sleeps == [5.0]


def test_changing_only_bookkeeping_keeps_the_gate_and_its_ready_time() -> None:
    provider = ReadinessProvider()
    old = {**props_for(), "ready_at": "T1"}
    new = {**props_for(), "timeout_seconds": "1800", "profile": "other"}
    changed = provider.diff("web-1/i-0a", old, new)
    assert changed.changes
    assert changed.replaces == []
    assert changed.delete_before_replace is False
    assert provider.update("web-1/i-0a", old, new).outs == {**new, "ready_at": "T1"}
    assert provider.update("web-1/i-0a", props_for(), new).outs == {**new, "ready_at": ""}


def test_a_new_host_boot_or_parameter_replaces_the_gate() -> None:
    provider = ReadinessProvider()
    old = props_for()
    assert not provider.diff("id", old, dict(old)).changes
    changed = provider.diff(
        "id",
        old,
        {**old, "instance_id": "i-0b", "userdata_sha256": "c" * 64, "parameter_name": "/p"},
    )
    assert changed.replaces == ["instance_id", "userdata_sha256", "parameter_name"]
    assert changed.changes


def test_recording_a_failure_is_not_retried_once_its_two_minutes_are_up() -> None:
    ssm = FakeSsm(puts=[aws_error("ThrottlingException", operation="PutParameter")] * 3)
    looks = iter([0.0, 120.0])  # the deadline is set, then the first put is refused at 2 min
    slept: list[float] = []
    error = record_failure(
        AwsClients.single(ssm), "/r/web-1", "i-0a", clock=lambda: next(looks), sleep=slept.append
    )
    assert error is not None
    assert slept == []


def test_a_dead_instances_failure_still_shows_the_last_report_and_aws_trouble() -> None:
    stale = json.dumps({"instance_id": "i-0old", "userdata_sha256": "cd" * 32, "ready_at": "T0"})
    ssm = FakeSsm([stale, aws_error("ThrottlingException", "Rate exceeded")])
    clock = Clock()
    gone = iter([None, "is terminated and cannot become ready"])
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 900)
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(spec, ssm, lambda _: next(gone), clock=clock, sleep=clock.sleep)
    message = str(error.value)
    assert message.startswith(
        "web-1 (instance i-0a) is terminated and cannot become ready (the last look at AWS "
        "failed: throttled, ThrottlingException: Rate exceeded).\n"
    )
    assert "the last report there: instance i-0old, userdata sha256 cdcdcdcdcdcd..., at T0." in (
        message
    )


def test_a_report_without_a_time_leaves_the_ready_time_empty() -> None:
    bare = json.dumps({"instance_id": "i-0a", "userdata_sha256": DIGEST})
    provider, _ = provider_with(Sessions(ssm=FakeSsm([bare]), ec2=FakeEc2("running")))
    created = provider.create(props_for())
    assert created.outs is not None
    assert created.outs["ready_at"] == ""


def test_a_provider_restored_from_an_older_state_makes_boto3s_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider stored before clients could be handed in has no `_clients`: it uses the
    deployer's profile and region as the boto3 clients would."""
    made: list[tuple[str, str]] = []

    def boto3_like(profile: str, region: str) -> AwsClients:
        made.append((profile, region))
        return AwsClients(Sessions(ssm=FakeSsm([MATCHING]), ec2=FakeEc2("running")), region)

    monkeypatch.setattr(readiness_wait, "boto3_clients", boto3_like)
    provider = ReadinessProvider.__new__(ReadinessProvider)
    assert provider.create(props_for()).id == "web-1/i-0a"
    assert made == [("deployer", REGION)]


def test_the_deadline_counts_from_when_the_wait_started() -> None:
    clock = Clock(start=5000.0)
    spec = ReadinessSpec("web-1", "i-0a", PARAMETER, DIGEST, 30)
    with pytest.raises(HostNotReadyError, match="within 30 s"):
        wait_for_report(spec, FakeSsm(["{}"]), clock=clock, sleep=clock.sleep)
    assert clock.now == 5030.0
