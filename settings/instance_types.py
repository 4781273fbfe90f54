"""EC2 instance types: which exist, which CPU architecture each has, which cannot run Ubuntu.

Changes when AWS adds instance families (a boto3 bump) or the program supports another CPU.
The AMI of a node is chosen by its architecture, so the instance-type check and the image
choice read the same rules.
"""

from __future__ import annotations

import functools
import re

import botocore.session

CPU_ARCHITECTURES = ("amd64", "arm64")  # Ubuntu's names, as in Canonical's AMI parameters
# Graviton families carry a "g" after the generation digit (t4g, m7g, c7gn, x2gd, is4gen, g5g);
# the first Graviton, a1, does not, nor do the Grace superchips (p6e-gb200).
_ARM64_FAMILY = re.compile(r"a1|[a-z]+\d+[a-z-]*g[a-z-]*|[a-z]+\d+[a-z]*-gb\d+")
_MAC_FAMILY = re.compile(r"mac.*")


def cpu_architecture(instance_type: str) -> str:
    """`arm64` for Graviton (and Grace) instance types, `amd64` otherwise (Ubuntu's naming)."""
    family = instance_type.partition(".")[0]
    return "arm64" if _ARM64_FAMILY.fullmatch(family) else "amd64"


@functools.cache
def ec2_instance_types() -> frozenset[str]:
    """Every EC2 instance type, from the EC2 API model that ships with the locked botocore.

    A made-up type (`t3.huge`) would otherwise reach RunInstances; a type newer than the
    locked botocore is refused until boto3 is bumped, which the error says."""
    model = botocore.session.get_session().get_service_model("ec2")
    return frozenset(model.shape_for("InstanceType").enum)


def runs_ubuntu(instance_type: str) -> bool:
    """False for Mac instances: they boot macOS only, and there is no Ubuntu image for them."""
    return not _MAC_FAMILY.fullmatch(instance_type.partition(".")[0])
