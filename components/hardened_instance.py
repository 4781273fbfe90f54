"""The one way this program makes an EC2 instance, so every tier gets the same hardening.

IMDSv2 only (a stolen SSRF cannot read role credentials with a plain GET), an encrypted gp3 root
volume, and userdata that replaces the instance when it changes, so cloud-init always runs on the
configuration the code declares. A new image replaces the instance too: the image is an explicit
input (`amiIds`, pinned per CPU architecture), and every replacement rolls behind readiness
gates, so an image bump is as safe as a code change and shows as such in a preview. So does a
failed readiness gate, through the instance's replacement trigger: the next run replaces the
instance that never served.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

UBUNTU_AMI_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
)
ROOT_VOLUME_GB = 16
# What pulumi-aws applies to a running instance by stopping it, modifying it and starting it
# (terraform-provider-aws, resourceInstanceUpdate): the same id and address, so no readiness
# gate would wait and the next batch would start at once. Replacing instead sends the change
# down the rolling path: a new instance, gated, before the old one is deleted. (`userData`
# already replaces: `user_data_replace_on_change`.)
STOP_START_INPUTS = ["instanceType", "capacityReservationSpecification"]


def ubuntu_ami(architecture: str, parent: pulumi.Resource) -> str:
    """Ubuntu 24.04 LTS's current AMI, from Canonical's public SSM parameter.

    Used for architectures the stack does not pin. Canonical publishes new images every few
    weeks, and each one then replaces (rolling) every instance of that architecture on the
    next `pulumi up`; pin images to decide when that happens.
    """
    parameter = aws.ssm.get_parameter(
        name=UBUNTU_AMI_PARAMETER.format(arch=architecture),
        opts=pulumi.InvokeOptions(parent=parent),
    )
    pulumi.log.warn(
        f"web-infra:amiIds.{architecture} is not pinned: using Canonical's current Ubuntu 24.04 "
        f"image {parameter.value}, so a new Canonical image replaces the {architecture} "
        "instances on the next `pulumi up`. Pin it with `uv run python -m tools.ami --stack "
        "<stack> --write`.",
        resource=parent,
    )
    return parameter.value


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    """The `Name` tag, e.g. web-infra-dev-web-1."""
    role: str
    """The `Role` tag: `load-balancer` or `web`."""
    ami: str
    instance_type: str
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    instance_profile: pulumi.Input[str]
    user_data: pulumi.Input[str]
    """Known at preview, except a database host's (it names its volume and certificate)."""
    public_ip: bool
    private_ip: str | None = None
    """A fixed private address (the load-balancer pair's); None: the subnet picks one."""
    replacement_trigger: str | None = None
    """Replaces the instance when it changes: its host's readiness-gate failure record
    (`GateSettings.replacement_trigger`), so a failed boot is retried on the next `pulumi up`."""


def hardened_instance(
    resource_name: str, spec: InstanceSpec, opts: pulumi.ResourceOptions
) -> aws.ec2.Instance:
    return aws.ec2.Instance(
        resource_name,
        ami=spec.ami,
        instance_type=spec.instance_type,
        subnet_id=spec.subnet_id,
        vpc_security_group_ids=[spec.security_group_id],
        iam_instance_profile=spec.instance_profile,
        associate_public_ip_address=spec.public_ip,
        private_ip=spec.private_ip,
        user_data=spec.user_data,
        user_data_replace_on_change=True,
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
        ),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            encrypted=True,
            volume_type="gp3",
            volume_size=ROOT_VOLUME_GB,
            delete_on_termination=True,
        ),
        tags={"Name": spec.name, "Role": spec.role},
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                replace_on_changes=STOP_START_INPUTS,
                replacement_trigger=spec.replacement_trigger,
            ),
        ),
    )
