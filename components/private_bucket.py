"""A bucket no one outside the stack's own roles can reach: the shape both of the stack's
buckets share (the artifacts the hosts fetch, the database hosts' backups).

Public access is blocked at every level, object ACLs are switched off (the bucket owner owns
every object, so access is the policies' alone), and a bucket policy refuses any request that
is not over TLS. What differs (who may destroy its objects, versioning, retention) stays with
its owner.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws


def private_bucket(
    resource_name: str,
    parts: str,
    *,
    bucket_name: str,
    force_destroy: bool,
    opts: pulumi.ResourceOptions,
) -> aws.s3.Bucket:
    """The bucket `bucket_name` (Pulumi name `resource_name`) and its guards, named
    `<parts>-no-public-access`, `<parts>-owner-enforced` and `<parts>-tls-only`."""
    bucket = aws.s3.Bucket(
        resource_name, bucket=bucket_name, force_destroy=force_destroy, opts=opts
    )
    aws.s3.BucketPublicAccessBlock(
        f"{parts}-no-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    aws.s3.BucketOwnershipControls(
        f"{parts}-owner-enforced",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts,
    )
    aws.s3.BucketPolicy(
        f"{parts}-tls-only", bucket=bucket.id, policy=bucket.arn.apply(tls_only), opts=opts
    )
    return bucket


def tls_only(bucket_arn: str) -> str:
    """A bucket policy that refuses every request made without TLS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyPlainHttp",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
