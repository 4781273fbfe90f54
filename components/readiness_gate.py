"""A readiness gate: `pulumi up` waits here until a new host reports that it serves.

Like CloudFormation's creation policy with `cfn-signal`. The gate, a dynamic resource created
right after the instance, waits for the host's readiness report (`components.readiness_wait`).
Everything that sends traffic to the host (its DNS record, the Elastic IP association) takes
its address from the gate, so it is switched only after the host serves; and the host it
replaces is deleted only at the end of the update, after every switch. A host that never
becomes ready fails the update with an error that names it and says where to look, and nothing
was switched to it.

A failed gate heals on the next `pulumi up`: it records the failed instance's id in the host's
failure record (an SSM parameter the program owns and only the deployer writes), the program
reads every record of the stack when it starts, and an instance takes its host's record as its
`replacement_trigger`. So the next run replaces exactly the instance that failed and waits for
its replacement, with no change and no `--replace`. A record keeps naming the last failed
instance after its replacement served: clearing it would change the trigger again and replace
a good host. It goes away with its host (scale down, destroy).

This module is the program's side: the gate resource, the SSM parameters a host reports to and
a failed gate records in, and the records read as a run starts. It changes when the way gates
are wired into the program changes; the wait itself runs in the provider process and changes
on its own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.by_value import by_value

# Stacks deployed before the providers were serialized by value hold a reference to
# `components.readiness_gate.ReadinessProvider` in their state: it must stay importable here.
from components.readiness_wait import ReadinessProvider, userdata_sha256

PENDING_REPORT = "{}"  # the parameter's value before any host reported
NO_FAILURE = "none"  # a failure record's value before any gate of its host failed
FAILURES_FOLDER = "gate-failures"


@dataclass(frozen=True)
class ReadinessGateArgs:
    host: str
    """The host's name (web-1, load-balancer): in error messages and the gate's id."""
    instance_id: pulumi.Input[str]
    private_ip: pulumi.Input[str]
    """Passed through, so whatever routes to the host takes the address from the gate."""
    userdata: pulumi.Input[str]
    """The rendered userdata the instance was launched with."""
    parameter_name: str
    """The SSM parameter the host writes its report to."""
    failure_record: pulumi.Input[str]
    """The SSM parameter the gate writes the instance id to when the host fails."""
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
            by_value(ReadinessProvider)(),
            name,
            {
                "host": args.host,
                "instance_id": args.instance_id,
                "private_ip": args.private_ip,
                "userdata_sha256": _digest(args.userdata),
                "parameter_name": args.parameter_name,
                "failure_record": args.failure_record,
                "region": args.region,
                "profile": args.profile or "",
                "timeout_seconds": args.timeout_seconds,
                "ready_at": None,
            },
            opts,
        )


def _digest(userdata: pulumi.Input[str]) -> pulumi.Input[str]:
    """The userdata's digest: at once when it is known at preview (every host but a database
    host, whose userdata names its volume and certificate)."""
    if isinstance(userdata, str):
        return userdata_sha256(userdata)
    return pulumi.Output.all(userdata).apply(lambda known: userdata_sha256(known[0]))


def failed_instances(names: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """Host -> failed instance, from the failure records' parameter names and values."""
    return {name.rsplit("/", 1)[-1]: value for name, value in zip(names, values, strict=True)}


@dataclass(frozen=True)
class GateSettings:
    """How gates talk to AWS and how long they wait; the same for every host of a stack."""

    region: pulumi.Input[str]
    profile: str | None
    timeout_seconds: int
    failures_path: str = ""
    """The SSM path of the stack's failure records: a parameter per host."""
    failed_instances: Mapping[str, str] = field(default_factory=dict)
    """Host -> the instance its failure record names, as this run found them."""

    @classmethod
    def read(
        cls,
        *,
        region: pulumi.Input[str],
        profile: str | None,
        timeout_seconds: int,
        readiness_prefix: str,
        parent: pulumi.Resource,
    ) -> GateSettings:
        """The settings, with the failure records read from AWS as this run starts.

        The records sit beside the readiness reports (`/web-infra-dev/gate-failures` next to
        `/web-infra-dev/ready`) but outside their folder, so no host's report permission
        reaches them. A lookup runs at preview too, so the preview shows the replacement.
        """
        path = posixpath.join(posixpath.dirname(readiness_prefix), FAILURES_FOLDER)
        found = aws.ssm.get_parameters_by_path(path=path, opts=pulumi.InvokeOptions(parent=parent))
        failed = failed_instances(found.names or [], found.values or [])
        return cls(region, profile, timeout_seconds, path, failed)

    def failure_record(self, host: str) -> str:
        return f"{self.failures_path}/{host}"

    def replacement_trigger(self, host: str) -> str:
        """The instance of `host` is replaced whenever this changes: after a failed gate.

        Stable otherwise: "none" until the host's first failure, then the last failed instance
        (the record is not cleared, or the host would be replaced again).
        """
        return self.failed_instances.get(host, NO_FAILURE)


def _value_owned_elsewhere(
    resource_name: str,
    name: str,
    first_value: str,
    description: str,
    opts: pulumi.ResourceOptions,
) -> aws.ssm.Parameter:
    """An SSM parameter the program owns (so `pulumi destroy` removes it) and someone else
    writes: its value is ignored after creation, or every `pulumi up` would reset it."""
    return aws.ssm.Parameter(
        resource_name,
        name=name,
        type="String",
        insecure_value=first_value,
        description=description,
        opts=pulumi.ResourceOptions.merge(
            opts,
            # A fixed name: a replacement must delete the old one before creating the new one.
            pulumi.ResourceOptions(ignore_changes=["insecureValue"], delete_before_replace=True),
        ),
    )


def report_parameter(
    resource_name: str, parameter_name: str, opts: pulumi.ResourceOptions
) -> aws.ssm.Parameter:
    """The SSM parameter a host writes its readiness report to (the host owns its value)."""
    return _value_owned_elsewhere(
        resource_name,
        parameter_name,
        PENDING_REPORT,
        "web-infra: which instance and userdata last reported that this host serves",
        opts,
    )


def failure_record(
    resource_name: str, host: str, settings: GateSettings, opts: pulumi.ResourceOptions
) -> aws.ssm.Parameter:
    """The SSM parameter a failed gate writes its instance id to; see the module docstring.
    It goes with its host (scale down, destroy); the gate owns its value."""
    return _value_owned_elsewhere(
        resource_name,
        settings.failure_record(host),
        NO_FAILURE,
        "web-infra: the last instance of this host whose readiness gate failed",
        opts,
    )


def gate_for(
    resource_name: str,
    *,
    host: str,
    instance: aws.ec2.Instance,
    userdata: pulumi.Input[str],
    parameter_name: str,
    settings: GateSettings,
    opts: pulumi.ResourceOptions,
) -> ReadinessGate:
    record = failure_record(f"{resource_name}-failures", host, settings, opts)
    return ReadinessGate(
        resource_name,
        ReadinessGateArgs(
            host=host,
            instance_id=instance.id,
            private_ip=instance.private_ip,
            userdata=userdata,
            parameter_name=parameter_name,
            failure_record=record.name,
            region=settings.region,
            profile=settings.profile,
            timeout_seconds=settings.timeout_seconds,
        ),
        opts,
    )
