"""Waiting for a host's readiness report: the readiness gate's provider and what it runs.

At the end of its first boot every host runs `userdata/scripts/report_ready.py`: once its own
service answers locally, it writes `{"instance_id", "userdata_sha256", "ready_at"}` to its SSM
parameter. `wait_for_report` polls that parameter until it names exactly the gate's instance
and the digest of exactly the userdata the program rendered for it (`ReadinessSpec`). A host
that never becomes ready ends the wait with an error that names it and says where to look;
the provider then records the failed instance in the host's failure record, so the next
`pulumi up` replaces it (see `components.readiness_gate`). The lab waits with the same code.

Throttling, expired credentials and an unreachable endpoint are retried until the gate's own
deadline; anything else ends the wait at once.

Changes when what a host reports, how the wait talks to AWS or what the provider does at
create, diff and update changes. All of it runs in Pulumi's dynamic-provider process, with
boto3 and the deployment's credentials, and is serialized by value (`components.by_value`):
that copies this one module into the state, so its run-time code must not use any other
module of this project (tests/test_provider_serialization.py checks it). The program's side of
the gate (the resource, its SSM parameters, the failure records) is in
`components.readiness_gate`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import botocore.exceptions
import pulumi
import pulumi.dynamic

POLL_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0  # the longest pause after throttling or an AWS outage
RECORD_SECONDS = 120.0  # how long a failed gate keeps trying to record the failure
INSTANCE_CHECK_SECONDS = 30.0  # how often the gate asks EC2 whether the instance still lives
GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped")

# The error codes botocore's "standard" retry mode treats as throttling
# (botocore/retries/standard.py, ThrottlingErrorDetector); it gives up after 3 attempts, the
# gate keeps trying until its deadline. Tuples, not sets: the provider is pickled by value,
# and a set's order (so the pickle) would change with every process's string hashing.
THROTTLING_CODES = (
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
)
# Temporary credentials that ran out while the gate waited (an SSO or assumed-role session is
# often shorter than a first deploy). A new session reads the credential files again, so
# credentials the deployer refreshes meanwhile (`aws sso login`) are picked up.
EXPIRED_CODES = ("ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired")
CREDENTIAL_ERRORS = (
    botocore.exceptions.TokenRetrievalError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.RefreshWithMFAUnsupportedError,
)
UNREACHABLE_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
)
SERVER_ERROR_CODES = ("InternalError", "InternalFailure", "ServiceUnavailable")


def transient(error: BaseException) -> str | None:
    """Why `error` is worth retrying ("throttled", "expired", "unreachable"), or None."""
    if isinstance(error, CREDENTIAL_ERRORS):
        return "expired"
    if isinstance(error, UNREACHABLE_ERRORS):
        return "unreachable"
    if isinstance(error, botocore.exceptions.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in THROTTLING_CODES:
            return "throttled"
        if code in EXPIRED_CODES:
            return "expired"
        if code in SERVER_ERROR_CODES:
            return "unreachable"
    return None


def describe(error: BaseException) -> str:
    """An AWS error in one line: its code and message, never a request's parameters."""
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}"[:300]
    return f"{type(error).__name__}: {error}"[:300]


class AwsClients:
    """boto3 clients of one session, made again when the credentials expired."""

    def __init__(self, new_session: Callable[[], Any], region: str) -> None:
        self._new_session = new_session
        self._region = region
        self._clients: dict[str, Any] = {}
        self.sessions = 0
        """How many sessions were made: 1, plus one per renewal."""

    def __call__(self, service: str) -> Any:
        if not self._clients:
            self._session = self._new_session()
            self.sessions += 1
        if service not in self._clients:
            self._clients[service] = self._session.client(service, region_name=self._region)
        return self._clients[service]

    def renew(self) -> None:
        self._clients.clear()

    @classmethod
    def single(cls, client: Any) -> AwsClients:
        """One ready-made client for every service (the lab hands in its SSM client)."""
        return cls(lambda: SimpleNamespace(client=lambda *_, **__: client), "")


def boto3_clients(profile: str, region: str) -> AwsClients:
    import boto3  # noqa: PLC0415 - imported in the provider process, where it runs

    return AwsClients(lambda: boto3.Session(profile_name=profile or None), region)


def userdata_sha256(userdata: str) -> str:
    """The digest a host computes over the userdata it booted with (cloud-init's raw copy)."""
    return hashlib.sha256(userdata.encode()).hexdigest()


class HostNotReadyError(Exception):
    """A host did not report that it serves; the message says which and where to look."""


@dataclass(frozen=True)
class ReadinessSpec:
    """What a gate waits for; all of it is known when the instance exists."""

    host: str
    """The host's name: web-1, load-balancer."""
    instance_id: str
    parameter_name: str
    userdata_sha256: str
    timeout_seconds: float

    def matches(self, report: dict[str, Any]) -> bool:
        return (
            report.get("instance_id") == self.instance_id
            and report.get("userdata_sha256") == self.userdata_sha256
        )

    def failure(
        self, why: str, report: dict[str, Any] | None, trouble: str | None = None
    ) -> HostNotReadyError:
        if trouble:
            why = f"{why} (the last look at AWS failed: {trouble})"
        last = "none"
        if report:
            last = (
                f"instance {report.get('instance_id')}, userdata sha256 "
                f"{str(report.get('userdata_sha256'))[:12]}..., at {report.get('ready_at')}"
            )
        return HostNotReadyError(
            f"{self.host} (instance {self.instance_id}) {why}.\n"
            f"  Waited for a report in SSM parameter {self.parameter_name} naming this instance "
            f"and userdata sha256 {self.userdata_sha256[:12]}...; the last report there: {last}.\n"
            f"  Nothing was switched to it: its DNS record and the Elastic IP still point at the "
            f"host it replaces, which keeps serving.\n"
            f"  Look at its first boot: `aws ec2 get-console-output --instance-id "
            f"{self.instance_id} --latest --output text`, or `aws ssm start-session --target "
            f"{self.instance_id}` and `cloud-init status --long`, "
            f"/var/log/cloud-init-output.log.\n"
            f"  If the host is only slow, raise web-infra:readinessTimeoutMinutes."
        )


def healing_note(failed_instance: str, record: str, error: BaseException | None) -> str:
    """What the next `pulumi up` does about a failed gate, for its error message."""
    if error is None:
        return (
            f"  The failure is recorded in SSM parameter {record}: the next `pulumi up` replaces "
            f"instance {failed_instance} with a new one and waits for it; `pulumi up` again is "
            f"enough (`pulumi preview` shows the replacement)."
        )
    return (
        f"  Recording the failure in SSM parameter {record} failed ({describe(error)}), so the "
        f"next `pulumi up` will not replace the instance by itself: run `aws ssm put-parameter "
        f"--name {record} --type String --overwrite --value {failed_instance}` first, or "
        f"`pulumi up --replace <the instance's URN>` (`pulumi stack --show-urns` lists it)."
    )


def record_failure(
    clients: AwsClients,
    record: str,
    instance_id: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BaseException | None:
    """Write the failed instance's id to its host's failure record; the error if that failed."""
    deadline = clock() + RECORD_SECONDS
    delay = POLL_SECONDS
    while True:
        try:
            clients("ssm").put_parameter(
                Name=record, Value=instance_id, Type="String", Overwrite=True
            )
        except Exception as error:
            kind = transient(error)
            if kind is None or clock() >= deadline:
                return error
            if kind == "expired":
                clients.renew()
            sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        else:
            return None


def read_report(ssm: Any, parameter_name: str) -> dict[str, Any]:
    """The host's last report, or {} when there is none (yet) or it is not JSON."""
    try:
        value = ssm.get_parameter(Name=parameter_name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return {}
    try:
        report = json.loads(value)
    except json.JSONDecodeError:
        return {}
    return report if isinstance(report, dict) else {}


class GateError(Exception):
    """The gate cannot tell whether the host serves (AWS refused it); nothing was recorded."""


def wait_for_report(
    spec: ReadinessSpec,
    aws_clients: AwsClients | Any,
    cannot_become_ready: Callable[[str], str | None] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the host's report matches `spec`; the report, or `HostNotReadyError`.

    `cannot_become_ready(instance_id)` says why the host will never report (its instance was
    terminated, say), or None; it lets the gate stop early instead of waiting out the timeout.
    Throttling, expired credentials and an unreachable AWS back off (up to a minute) and renew
    the session when needed, within the same timeout: a slow or briefly unavailable API is not
    a broken host. Any other AWS error is a `GateError`. `aws_clients`: the gate's clients, or
    one SSM client.
    """
    clients = aws_clients if isinstance(aws_clients, AwsClients) else AwsClients.single(aws_clients)
    started = clock()
    next_instance_check = started
    report: dict[str, Any] = {}
    trouble: str | None = None  # the last transient error, until a look succeeds again
    delay = POLL_SECONDS
    while True:
        try:
            report = read_report(clients("ssm"), spec.parameter_name)
        except Exception as error:
            kind = transient(error)
            if kind is None:
                raise GateError(
                    f"{spec.host} (instance {spec.instance_id}): reading SSM parameter "
                    f"{spec.parameter_name} failed ({describe(error)}), so the gate cannot tell "
                    f"whether it serves. Check the deployer's permissions "
                    f"(ssm:GetParameter on that parameter) and run `pulumi up` again."
                ) from None
            if kind == "expired":
                clients.renew()
            trouble = f"{kind}, {describe(error)}"
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        else:
            trouble, delay = None, POLL_SECONDS
            if spec.matches(report):
                return report
        now = clock()
        if cannot_become_ready is not None and now >= next_instance_check:
            reason = cannot_become_ready(spec.instance_id)
            if reason:
                raise spec.failure(reason, report, trouble)
            next_instance_check = now + INSTANCE_CHECK_SECONDS
        if now - started >= spec.timeout_seconds:
            raise spec.failure(
                f"did not report that it serves within {_duration(spec.timeout_seconds)}",
                report,
                trouble,
            )
        sleep(delay)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


class ReadinessProvider(pulumi.dynamic.ResourceProvider):
    """Create waits for the host's report and records a failure; nothing else touches AWS.

    Keep this class at this name, importable from the gate's module too: stacks deployed
    before the providers were serialized by value hold a reference to it there
    (tests/test_provider_serialization.py).
    """

    serialize_as_secret_always = False  # code and constants only; nothing secret in it

    # Inputs whose change means a different host or boot: wait again, as a new gate.
    REPLACE_ON = ("instance_id", "userdata_sha256", "parameter_name")

    def __init__(self, clients: Callable[[str, str], AwsClients] | None = None) -> None:
        super().__init__()
        # Tests hand in their own clients; the provider process makes boto3's.
        self._clients = clients

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        make_clients = getattr(self, "_clients", None) or boto3_clients
        clients = make_clients(props.get("profile") or "", props["region"])

        def instance_gone(instance_id: str) -> str | None:
            try:
                found = clients("ec2").describe_instances(InstanceIds=[instance_id])
            except Exception as error:
                if transient(error) == "expired":
                    clients.renew()
                return None
            reservations = found["Reservations"]
            state = str(reservations[0]["Instances"][0]["State"]["Name"]) if reservations else ""
            return f"is {state} and cannot become ready" if state in GONE_STATES else None

        spec = ReadinessSpec(
            host=props["host"],
            instance_id=props["instance_id"],
            parameter_name=props["parameter_name"],
            userdata_sha256=props["userdata_sha256"],
            timeout_seconds=float(props["timeout_seconds"]),
        )
        try:
            report = wait_for_report(spec, clients, instance_gone)
        except HostNotReadyError as failure:
            record = props.get("failure_record") or ""
            if not record:  # a gate created before failures were recorded
                raise
            error = record_failure(clients, record, spec.instance_id)
            raise HostNotReadyError(
                f"{failure}\n{healing_note(spec.instance_id, record, error)}"
            ) from None
        return pulumi.dynamic.CreateResult(
            id_=f"{spec.host}/{spec.instance_id}",
            outs={**props, "ready_at": str(report.get("ready_at", ""))},
        )

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in self.REPLACE_ON if olds.get(key) != news.get(key)]
        # The provider's own serialized code is not compared: a new version of this file must
        # not make every gate wait again.
        changed = any(olds.get(key) != news.get(key) for key in news if not key.startswith("__"))
        return pulumi.dynamic.DiffResult(
            changes=changed, replaces=replaces, delete_before_replace=False
        )

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        # Only bookkeeping changed (timeout, profile, the address): the host already serves.
        return pulumi.dynamic.UpdateResult(outs={**news, "ready_at": olds.get("ready_at", "")})
