"""A readiness gate: `pulumi up` waits here until a new host reports that it serves.

Like CloudFormation's creation policy with `cfn-signal`. At the end of its first boot every host
runs `userdata/scripts/report_ready.py`: once its own service answers locally, it writes
`{"instance_id", "userdata_sha256", "ready_at"}` to its SSM parameter. The gate, a dynamic
resource created right after the instance, polls that parameter until it names exactly this
instance and the digest of exactly the userdata the program rendered for it. Everything that
sends traffic to the host (its DNS record, the Elastic IP association) takes its address from
the gate, so it is switched only after the host serves; and the host it replaces is deleted
only at the end of the update, after every switch. A host that never becomes ready fails the
update with an error that names it and says where to look, and nothing was switched to it.

The provider runs in Pulumi's dynamic-provider process, which imports this module from the
project directory; it talks to AWS with boto3 and the same credentials as the deployment.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_aws as aws

POLL_SECONDS = 5.0
INSTANCE_CHECK_SECONDS = 30.0  # how often the gate asks EC2 whether the instance still lives
PENDING_REPORT = "{}"  # the parameter's value before any host reported
GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped")


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

    def failure(self, why: str, report: dict[str, Any] | None) -> HostNotReadyError:
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
            f"  Fix the cause and run `pulumi up` again (the failed instance is replaced), or "
            f"raise web-infra:readinessTimeoutMinutes if the host is only slow."
        )


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


def wait_for_report(
    spec: ReadinessSpec,
    ssm: Any,
    cannot_become_ready: Callable[[str], str | None] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the host's report matches `spec`; the report, or `HostNotReadyError`.

    `cannot_become_ready(instance_id)` says why the host will never report (its instance was
    terminated, say), or None; it lets the gate stop early instead of waiting out the timeout.
    """
    started = clock()
    next_instance_check = started
    report: dict[str, Any] = {}
    while True:
        report = read_report(ssm, spec.parameter_name)
        if spec.matches(report):
            return report
        now = clock()
        if cannot_become_ready is not None and now >= next_instance_check:
            reason = cannot_become_ready(spec.instance_id)
            if reason:
                raise spec.failure(reason, report)
            next_instance_check = now + INSTANCE_CHECK_SECONDS
        if now - started >= spec.timeout_seconds:
            raise spec.failure(
                f"did not report that it serves within {_duration(spec.timeout_seconds)}", report
            )
        sleep(POLL_SECONDS)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


class ReadinessProvider(pulumi.dynamic.ResourceProvider):
    """Create waits for the host's report; nothing else touches AWS."""

    serialize_as_secret_always = False  # a reference to this module; nothing secret in it

    # Inputs whose change means a different host or boot: wait again, as a new gate.
    REPLACE_ON = ("instance_id", "userdata_sha256", "parameter_name")

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        import boto3  # noqa: PLC0415 - imported in the provider process, where it runs

        session = boto3.Session(profile_name=props.get("profile") or None)
        ssm = session.client("ssm", region_name=props["region"])
        ec2 = session.client("ec2", region_name=props["region"])

        def instance_gone(instance_id: str) -> str | None:
            try:
                found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            except Exception:  # a failed look is not a verdict: keep waiting
                return None
            state = str(found[0]["Instances"][0]["State"]["Name"]) if found else ""
            return f"is {state} and cannot become ready" if state in GONE_STATES else None

        spec = ReadinessSpec(
            host=props["host"],
            instance_id=props["instance_id"],
            parameter_name=props["parameter_name"],
            userdata_sha256=props["userdata_sha256"],
            timeout_seconds=float(props["timeout_seconds"]),
        )
        report = wait_for_report(spec, ssm, instance_gone)
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


@dataclass(frozen=True)
class ReadinessGateArgs:
    host: str
    """The host's name (web-1, load-balancer): in error messages and the gate's id."""
    instance_id: pulumi.Input[str]
    private_ip: pulumi.Input[str]
    """Passed through, so whatever routes to the host takes the address from the gate."""
    userdata: str
    """The rendered userdata the instance was launched with."""
    parameter_name: str
    """The SSM parameter the host writes its report to."""
    region: pulumi.Input[str]
    profile: str | None
    """The AWS profile of the deployment (`aws:profile`), if any."""
    timeout_seconds: int


class ReadinessGate(pulumi.dynamic.Resource, module="readiness", name="ReadinessGate"):
    """Exists once the host serves; its `private_ip` is the address traffic may use."""

    instance_id: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    ready_at: pulumi.Output[str]

    def __init__(
        self, name: str, args: ReadinessGateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ReadinessProvider(),
            name,
            {
                "host": args.host,
                "instance_id": args.instance_id,
                "private_ip": args.private_ip,
                "userdata_sha256": userdata_sha256(args.userdata),
                "parameter_name": args.parameter_name,
                "region": args.region,
                "profile": args.profile or "",
                "timeout_seconds": args.timeout_seconds,
                "ready_at": None,
            },
            opts,
        )


@dataclass(frozen=True)
class GateSettings:
    """How gates talk to AWS and how long they wait; the same for every host of a stack."""

    region: pulumi.Input[str]
    profile: str | None
    timeout_seconds: int


def report_parameter(
    resource_name: str, parameter_name: str, opts: pulumi.ResourceOptions
) -> aws.ssm.Parameter:
    """The SSM parameter a host writes its readiness report to.

    The program owns it (so `pulumi destroy` removes it) and the host owns its value: the value
    is ignored after creation, or every `pulumi up` would reset the hosts' reports.
    """
    return aws.ssm.Parameter(
        resource_name,
        name=parameter_name,
        type="String",
        insecure_value=PENDING_REPORT,
        description="web-infra: which instance and userdata last reported that this host serves",
        opts=pulumi.ResourceOptions.merge(
            opts,
            # A fixed name: a replacement must delete the old one before creating the new one.
            pulumi.ResourceOptions(ignore_changes=["insecureValue"], delete_before_replace=True),
        ),
    )


def gate_for(
    resource_name: str,
    *,
    host: str,
    instance: aws.ec2.Instance,
    userdata: str,
    parameter_name: str,
    settings: GateSettings,
    opts: pulumi.ResourceOptions,
) -> ReadinessGate:
    return ReadinessGate(
        resource_name,
        ReadinessGateArgs(
            host=host,
            instance_id=instance.id,
            private_ip=instance.private_ip,
            userdata=userdata,
            parameter_name=parameter_name,
            region=settings.region,
            profile=settings.profile,
            timeout_seconds=settings.timeout_seconds,
        ),
        opts,
    )
