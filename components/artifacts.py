"""Where hosts get the files too big for their userdata: a private S3 bucket, one object each.

EC2 userdata is limited to 16 KiB, and the app's code alone would take most of it. So the big
files (the app's code, scripts, the metrics agent's config; see userdata/shipping.py) live in
S3 under keys made of their SHA-256 (content-addressed: a new version is a new object, and an
instance always fetches exactly the bytes it was launched for), and each host's userdata names
those keys and digests. A code change therefore still changes the userdata (the nodes roll,
canary first), and the preview of a pull request shows the code diff on the object and the new
digest in the userdata. The bucket is private, encrypted, refuses plain HTTP and is reached
through the VPC's S3 gateway endpoint.

Its name must be known at preview (the userdata names it), so it is derived from the stack,
the account and the region instead of being generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.private_bucket import private_bucket
from settings.names import fit_name
from userdata.shipping import KEY_PREFIX, PublishedFile

MAX_BUCKET_NAME = 63


def bucket_name(name_prefix: str, account_id: str, region: str) -> str:
    """Globally unique and stable: the stack's prefix, then the account and the region."""
    suffix = f"-{account_id}-{region}-artifacts"
    # Cut with a hash: two stacks whose prefixes share a start must not share a bucket.
    return f"{fit_name(name_prefix, MAX_BUCKET_NAME - len(suffix))}{suffix}"


@dataclass(frozen=True)
class ArtifactsArgs:
    bucket_name: str
    files: tuple[PublishedFile, ...]
    """Every file any host fetches; one object per distinct content."""


class Artifacts(pulumi.ComponentResource):
    bucket_arn: pulumi.Output[str]
    files_arn: pulumi.Output[str]
    """The objects hosts may read (an ARN pattern for their IAM policies)."""

    def __init__(
        self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:artifacts:Artifacts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Every object is the program's own and can be made again: destroy may empty it.
        bucket = private_bucket(
            f"{name}-bucket", name, bucket_name=args.bucket_name, force_destroy=True, opts=child
        )
        self.objects = [
            aws.s3.BucketObjectv2(
                f"{name}-{published.label}",
                bucket=bucket.id,
                key=published.file.key,
                # Text, so a pull request's preview shows the change line by line.
                content=published.file.content.decode(),
                content_type="text/plain; charset=utf-8",
                opts=child,
            )
            for published in args.files
        ]
        self.bucket_arn = bucket.arn
        self.files_arn = bucket.arn.apply(lambda arn: f"{arn}/{KEY_PREFIX}/*")
        self.register_outputs({"bucket_arn": self.bucket_arn})
