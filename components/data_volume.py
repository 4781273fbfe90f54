"""A database's data volume on the instance that runs the database (a database host of
`dbMode: ec2`, or web-1 and web-2 with `colocated`)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from userdata.database_host import DATA_DEVICE


def attach_data_volume(
    name: str,
    volume_id: pulumi.Input[str],
    instance: aws.ec2.Instance,
    opts: pulumi.ResourceOptions,
) -> aws.ec2.VolumeAttachment:
    """The data volume on its host: replaced with the instance (deleted first: the instance is
    stopped, so MariaDB shuts down cleanly, and the volume is detached); the host waits for it
    at boot."""
    return aws.ec2.VolumeAttachment(
        name,
        device_name=DATA_DEVICE,
        volume_id=volume_id,
        instance_id=instance.id,
        stop_instance_before_detaching=True,
        opts=opts,
    )
