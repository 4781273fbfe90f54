"""The IAM policies the program renders, per host, as the tests evaluate them.

`host_policies(run, stack)` follows the program's own registrations under mocks
(`tools.mocked_program.run_program`): each instance (its host name from its `Name` tag, its
`Role` tag), its instance profile, that profile's role, and every inline `RolePolicy` and
`RolePolicyAttachment` of the role. Per host, not per role tag, so that a change to one role
per host (each writing only its own readiness report) is evaluated as it is. An AWS
managed policy's document comes from moto's copy of AWS's managed policies, so a change of the
attachment (a scoped Session Manager policy instead of `AmazonSSMManagedInstanceCore`) is
evaluated as AWS would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tools.mocked_program import ProgramRun

MANAGED_PREFIX = "arn:aws:iam::aws:policy/"


@dataclass
class HostPolicies:
    host: str
    """The host's name in the program and the labs: "load-balancer", "web-1", ..."""
    tag: str
    """The instance's `Role` tag: "web" or "load-balancer"."""
    role_name: str
    instance_id: str
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Policy name (inline) or ARN (attached) -> its document."""


def managed_policy(arn: str) -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data  # noqa: PLC0415

    assert arn.startswith(MANAGED_PREFIX), f"{arn} is not an AWS managed policy"
    name = arn.removeprefix(MANAGED_PREFIX).rsplit("/", 1)[-1]
    policies = json.loads(aws_managed_policies_data)
    assert name in policies, f"no AWS managed policy {name} in moto's copy"
    document = policies[name]["Document"]
    return json.loads(document) if isinstance(document, str) else dict(document)


def _policy_document(policy: Any) -> dict[str, Any]:
    return json.loads(policy) if isinstance(policy, str) else dict(policy)


def host_policies(run: ProgramRun, stack: str = "dev") -> dict[str, HostPolicies]:
    """Host name -> the IAM role its instance runs as, with every policy of that role."""
    profiles = {
        r.outputs["name"]: r.outputs["role"]
        for r in run.of_type("aws:iam/instanceProfile:InstanceProfile")
    }
    prefix = f"web-infra-{stack}-"
    hosts: dict[str, HostPolicies] = {}
    for instance in run.of_type("aws:ec2/instance:Instance"):
        tags = instance.inputs["tags"]
        host = tags["Name"].removeprefix(prefix)
        role_name = profiles[instance.outputs["iamInstanceProfile"]]
        hosts[host] = HostPolicies(host, tags["Role"], role_name, instance.id)
    for host in hosts.values():
        for inline in run.of_type("aws:iam/rolePolicy:RolePolicy"):
            if inline.outputs["role"] == host.role_name:
                host.documents[inline.name] = _policy_document(inline.outputs["policy"])
        for attached in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
            if attached.outputs["role"] == host.role_name:
                arn = attached.outputs["policyArn"]
                if arn.startswith(MANAGED_PREFIX):
                    host.documents[arn] = managed_policy(arn)
                else:  # a customer managed policy of the program's own
                    (own,) = [
                        p
                        for p in run.of_type("aws:iam/policy:Policy")
                        if p.outputs.get("arn") == arn
                    ]
                    host.documents[arn] = _policy_document(own.outputs["policy"])
        assert host.documents, f"{host.host}'s role {host.role_name} has no policy at all"
    return hosts


def instance_context(region: str, account: str, instance_id: str) -> dict[str, str]:
    """The condition keys AWS adds to every call signed with an instance role's credentials."""
    return {"ec2:SourceInstanceARN": f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"}


def rendered_policies(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """Every policy document the program renders itself (inline and its own managed ones)."""
    found = {
        r.name: _policy_document(r.outputs["policy"])
        for r in run.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    found |= {
        r.name: _policy_document(r.outputs["policy"]) for r in run.of_type("aws:iam/policy:Policy")
    }
    return found


def bind(document: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """`document` with what AWS computes (the mocks' values) replaced by another run's."""
    text = json.dumps(document)
    for mocked, real in values.items():
        text = text.replace(mocked, real)
    return dict(json.loads(text))
