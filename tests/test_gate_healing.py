"""A failed gate heals on the next `pulumi up`, and gates ride out throttling and expired tokens.

The gate's provider functions run against moto across consecutive runs, as the engine would
call them: run 1's gate fails and records the failed instance; run 2 reads the records as the
program does, its replacement trigger differs from run 1's so the engine replaces the
instance, and the replacement's gate succeeds; run 3 changes nothing. AWS's transient errors
are injected with botocore's Stubber.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from test_readiness import REGION, USERDATA, aws  # noqa: F401 - `aws` is moto's server fixture

from components.readiness_gate import NO_FAILURE, GateSettings, failed_instances
from components.readiness_wait import (
    AwsClients,
    GateError,
    HostNotReadyError,
    ReadinessProvider,
    ReadinessSpec,
    record_failure,
    userdata_sha256,
    wait_for_report,
)

FAILURES = "/web-infra-heal/gate-failures"
REPORTS = "/web-infra-heal/ready"


def engine_replaces(old_trigger: Any, new_trigger: Any) -> bool:
    """The engine's rule for `replacement_trigger` (pulumi pkg/resource/deploy/step_generator.go,
    shouldTriggerReplace): no trigger on either side means no replacement, else any change."""
    if old_trigger is None or new_trigger is None:
        return False
    return bool(old_trigger != new_trigger)


def program_trigger(ssm: Any, host: str) -> str:
    """What the program passes as the host's instance trigger, read as `GateSettings.read`
    reads it (the same parsing of a get-parameters-by-path answer)."""
    found = ssm.get_parameters_by_path(Path=FAILURES)["Parameters"]
    failed = failed_instances([p["Name"] for p in found], [p["Value"] for p in found])
    return GateSettings(REGION, None, 60, FAILURES, failed).replacement_trigger(host)


def gate_props(instance_id: str, timeout: float) -> dict[str, Any]:
    return {
        "host": "web-1",
        "instance_id": instance_id,
        "private_ip": "10.20.128.11",
        "userdata_sha256": userdata_sha256(USERDATA),
        "parameter_name": f"{REPORTS}/web-1",
        "failure_record": f"{FAILURES}/web-1",
        "region": REGION,
        "profile": "",
        "timeout_seconds": timeout,
    }


@pytest.fixture
def account(aws: str) -> Iterator[tuple[Any, Any]]:  # noqa: F811 - the imported fixture
    """A fresh stack's parameters, as the program creates them, and an EC2 client."""
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=f"{REPORTS}/web-1", Value="{}", Type="String", Overwrite=True)
    ssm.put_parameter(Name=f"{FAILURES}/web-1", Value=NO_FAILURE, Type="String", Overwrite=True)
    yield ssm, boto3.client("ec2", region_name=REGION)
    ssm.delete_parameters(Names=[f"{REPORTS}/web-1", f"{FAILURES}/web-1"])


@functools.cache
def an_image(ec2: Any) -> str:
    return str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])  # seconds


def launch(ec2: Any) -> str:
    (instance,) = ec2.run_instances(ImageId=an_image(ec2), MinCount=1, MaxCount=1)["Instances"]
    return str(instance["InstanceId"])


def report(ssm: Any, instance_id: str) -> None:
    """What `report_ready.py` writes once the host serves."""
    value = (
        f'{{"instance_id": "{instance_id}", "userdata_sha256": "{userdata_sha256(USERDATA)}", '
        '"ready_at": "2026-12-03T10:00:00Z"}'
    )
    ssm.put_parameter(Name=f"{REPORTS}/web-1", Value=value, Type="String", Overwrite=True)


def test_a_failed_gate_is_healed_by_the_next_run(account: tuple[Any, Any]) -> None:
    ssm, ec2 = account
    provider = ReadinessProvider()

    # Run 1: the instance boots but never reports; the gate fails and records it.
    trigger_1 = program_trigger(ssm, "web-1")
    assert trigger_1 == NO_FAILURE
    failed = launch(ec2)
    with pytest.raises(HostNotReadyError) as error:
        provider.create(gate_props(failed, timeout=0))
    message = str(error.value)
    assert f"web-1 (instance {failed}) did not report that it serves" in message
    assert (
        f"The failure is recorded in SSM parameter {FAILURES}/web-1: the next `pulumi up` "
        f"replaces instance {failed} with a new one and waits for it; `pulumi up` again is "
        "enough" in message
    )
    record = ssm.get_parameter(Name=f"{FAILURES}/web-1")["Parameter"]["Value"]
    assert record == failed

    # Run 2, no change: the trigger differs, so the engine replaces the instance, and the
    # replacement's gate (a new instance id: a new gate) waits for it and succeeds.
    trigger_2 = program_trigger(ssm, "web-1")
    assert trigger_2 == failed
    assert engine_replaces(trigger_1, trigger_2), "the failed instance must be replaced"
    replacement = launch(ec2)
    assert provider.diff("id", gate_props(failed, 0), gate_props(replacement, 0)).replaces == [
        "instance_id"
    ]
    report(ssm, replacement)
    created = provider.create(gate_props(replacement, timeout=5))
    assert created.id == f"web-1/{replacement}"
    assert created.outs is not None
    assert created.outs["ready_at"] == "2026-12-03T10:00:00Z"

    # Run 3: the record still names the failed instance, so nothing is replaced again.
    assert ssm.get_parameter(Name=f"{FAILURES}/web-1")["Parameter"]["Value"] == failed
    assert not engine_replaces(trigger_2, program_trigger(ssm, "web-1"))
    # A stack deployed before triggers existed has none in its state: not a replacement.
    assert not engine_replaces(None, trigger_1)


def test_a_second_failure_replaces_again(account: tuple[Any, Any]) -> None:
    ssm, ec2 = account
    provider = ReadinessProvider()
    triggers = [program_trigger(ssm, "web-1")]
    for _ in range(2):
        instance = launch(ec2)
        with pytest.raises(HostNotReadyError):
            provider.create(gate_props(instance, timeout=0))
        triggers.append(program_trigger(ssm, "web-1"))
        assert triggers[-1] == instance
    assert all(engine_replaces(a, b) for a, b in itertools.pairwise(triggers))


def test_a_failure_that_cannot_be_recorded_says_how_to_replace_by_hand(
    account: tuple[Any, Any],
) -> None:
    """The deployer may not write the record (here a name AWS reserves, which it refuses with
    AccessDenied): the error says the next run will not heal by itself, and what to do."""
    _, ec2 = account
    instance = launch(ec2)
    props = {**gate_props(instance, timeout=0), "failure_record": "/aws/web-infra-heal/web-1"}
    with pytest.raises(HostNotReadyError) as error:
        ReadinessProvider().create(props)
    message = str(error.value)
    assert (
        "Recording the failure in SSM parameter /aws/web-infra-heal/web-1 failed "
        "(AccessDeniedException: " in message
    )
    assert "will not replace the instance by itself" in message
    assert "pulumi up --replace" in message


# --- transient AWS errors -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class StubbedSessions:
    """Sessions whose SSM clients answer from a queue of stubbed responses, one client per
    session: a renewed session gets the next client, as boto3 would with fresh credentials."""

    def __init__(self, per_session: list[list[tuple[str, Any]]]) -> None:
        self.stubbers: list[Stubber] = []
        self._per_session = iter(per_session)

    def __call__(self) -> StubbedSessions:
        client = boto3.client(
            "ssm",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        stubber = Stubber(client)
        for kind, answer in next(self._per_session):
            if kind == "error":
                stubber.add_client_error("get_parameter", service_error_code=answer)
            else:
                stubber.add_response("get_parameter", {"Parameter": {"Value": answer}})
        stubber.activate()
        self.stubbers.append(stubber)
        self._client = client
        return self

    def client(self, _service: str, region_name: str) -> Any:
        assert region_name == REGION
        return self._client


READY = f'{{"instance_id": "i-0a", "userdata_sha256": "{userdata_sha256(USERDATA)}"}}'
SPEC = ReadinessSpec("web-1", "i-0a", f"{REPORTS}/web-1", userdata_sha256(USERDATA), 900)


@pytest.mark.parametrize(
    "code",
    ["ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException"],
)
def test_throttling_is_retried_with_backoff(code: str) -> None:
    sessions = StubbedSessions([[("error", code), ("error", code), ("value", READY)]])
    clock = FakeClock()
    found = wait_for_report(SPEC, AwsClients(sessions, REGION), clock=clock, sleep=clock.sleep)
    assert found["instance_id"] == "i-0a"
    assert clock.sleeps == [10.0, 20.0], "backs off, within the gate's deadline"
    sessions.stubbers[0].assert_no_pending_responses()


@pytest.mark.parametrize(
    "code", ["ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"]
)
def test_expired_credentials_make_a_new_session(code: str) -> None:
    sessions = StubbedSessions([[("error", code)], [("value", "{}"), ("value", READY)]])
    clients = AwsClients(sessions, REGION)
    clock = FakeClock()
    found = wait_for_report(SPEC, clients, clock=clock, sleep=clock.sleep)
    assert found["instance_id"] == "i-0a"
    assert clients.sessions == 2, "the expired session was replaced by a new one"
    for stubber in sessions.stubbers:
        stubber.assert_no_pending_responses()


def test_throttling_until_the_deadline_fails_and_says_why() -> None:
    sessions = StubbedSessions([[("error", "ThrottlingException")] * 40])
    spec = ReadinessSpec("web-1", "i-0a", f"{REPORTS}/web-1", userdata_sha256(USERDATA), 300)
    clock = FakeClock()
    with pytest.raises(HostNotReadyError) as error:
        wait_for_report(spec, AwsClients(sessions, REGION), clock=clock, sleep=clock.sleep)
    assert "did not report that it serves within 5 min" in str(error.value)
    assert "the last look at AWS failed: throttled, ThrottlingException" in str(error.value)
    assert max(clock.sleeps) == 60.0, "the backoff is capped"
    assert clock.now < 300 + 60


def test_any_other_aws_error_ends_the_wait_at_once() -> None:
    sessions = StubbedSessions([[("error", "AccessDeniedException")]])
    clock = FakeClock()
    with pytest.raises(GateError, match=r"AccessDeniedException.*ssm:GetParameter"):
        wait_for_report(SPEC, AwsClients(sessions, REGION), clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_recording_a_failure_rides_out_throttling() -> None:
    client = boto3.client(
        "ssm",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.add_client_error("put_parameter", service_error_code="ThrottlingException")
    expected = {"Name": "/r/web-1", "Value": "i-0a", "Type": "String", "Overwrite": True}
    stubber.add_response("put_parameter", {"Version": 2}, expected)
    stubber.activate()

    class OneClient:
        def client(self, _service: str, region_name: str) -> Any:
            return client

    clock = FakeClock()
    error = record_failure(
        AwsClients(OneClient, REGION), "/r/web-1", "i-0a", clock=clock, sleep=clock.sleep
    )
    assert error is None
    stubber.assert_no_pending_responses()
