"""What each recorded AWS call asks of IAM: the action and the resource's ARN.

`lab.boot.aws_api` records requests as they arrive (signature scope, method, path, target,
body); this turns each into the `(action, resource)` pair IAM authorises, per the service
authorization reference: S3's REST verbs on buckets and objects, the JSON protocol's
`X-Amz-Target` (SSM, Secrets Manager) and the query protocol's `Action` (RDS, EC2's
`DescribeAddresses` and `AssociateAddress`, which the load-balancer pair makes). A request it
does not know is an error, not a guess, so a new call a host makes cannot pass unchecked.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class UnknownCall(ValueError):
    """A recorded request this module cannot name an action and resource for."""


@dataclass(frozen=True)
class Call:
    host: str | None
    role: str | None
    action: str
    resource: str
    status: int
    context: Mapping[str, str] = field(default_factory=dict)
    """Condition keys the request itself sets (CloudWatch's `cloudwatch:namespace`)."""

    def __str__(self) -> str:
        return f"{self.host} ({self.role}): {self.action} on {self.resource} -> {self.status}"


def classify(
    entry: dict[str, Any], account: str, secret_arns: Mapping[str, str] | None = None
) -> Call:
    """The IAM action and resource of one recorded request on one resource (see
    `classify_all` for a call IAM authorises on several).

    `secret_arns`: each secret's name -> its ARN. A secret named by its name is authorised
    against its whole ARN (with the random suffix Secrets Manager adds), which a policy names."""
    calls = classify_all(entry, account, secret_arns)
    if len(calls) != 1:
        raise UnknownCall(
            f"{calls[0].action} is authorised on {len(calls)} resources: use classify_all"
        )
    return calls[0]


def classify_all(
    entry: dict[str, Any], account: str, secret_arns: Mapping[str, str] | None = None
) -> list[Call]:
    """One `Call` per resource IAM authorises the recorded request on: EC2's
    `AssociateAddress` needs the action allowed on the Elastic IP and on the instance."""
    service, region = entry.get("service"), entry.get("region")
    if not service or not region:
        raise UnknownCall(f"an unsigned request: {entry['method']} {entry['path']}")
    if service == "s3":
        pairs = [_s3(entry)]
    elif entry.get("target"):
        pairs = [_json_protocol(entry, service, region, account, secret_arns or {})]
    else:
        pairs = _query_protocol(entry, service, region, account)
    context = _request_context(entry, service)
    return [
        Call(entry.get("host"), entry.get("role"), action, resource, int(entry["status"]), context)
        for action, resource in pairs
    ]


def _request_context(entry: dict[str, Any], service: str) -> dict[str, str]:
    """What AWS adds to the request's condition context from the request itself: the
    namespace a PutMetricData writes to (the agent's and the pair's policy is held to it), the
    prefix an S3 listing asks for (the database hosts' backup policy is held to theirs)."""
    if service == "s3":
        query = urllib.parse.parse_qs(entry.get("query", ""), keep_blank_values=True)
        listing = "list-type" in query or not urllib.parse.unquote(entry["path"]).strip("/")
        prefix = query.get("prefix", [""])[0]
        return {"s3:prefix": prefix} if listing and prefix else {}
    if service != "monitoring":
        return {}
    form = urllib.parse.parse_qs(entry.get("body") or entry.get("query", ""))
    namespace = form.get("Namespace", [""])[0]
    return {"cloudwatch:namespace": namespace} if namespace else {}


LISTING_PARAMETERS = frozenset(
    {"list-type", "prefix", "max-keys", "encoding-type", "continuation-token", "start-after"}
)
"""ListObjects(V2)'s own query parameters: a listing, authorised as ListBucket."""


def _s3(entry: dict[str, Any]) -> tuple[str, str]:
    host = entry["http_host"].split(":")[0]
    path = urllib.parse.unquote(entry["path"])
    if ".s3." in host:  # virtual-hosted style: <bucket>.s3.<region>.amazonaws.com
        bucket, key = host.split(".s3.")[0], path.lstrip("/")
    else:  # path style: s3.<region>.amazonaws.com/<bucket>/<key>
        bucket, _, key = path.lstrip("/").partition("/")
    query = urllib.parse.parse_qs(entry.get("query", ""), keep_blank_values=True)
    method = entry["method"]
    if key:
        arn = f"arn:aws:s3:::{bucket}/{key}"
        # An upload in parts (a backup streamed to the bucket): each step is authorised as
        # PutObject, and abandoning it as AbortMultipartUpload.
        if {"uploads", "uploadId"} & set(query) and not {"acl", "tagging"} & set(query):
            if method == "DELETE" and "uploadId" in query:
                return "s3:AbortMultipartUpload", arn
            if method in ("POST", "PUT"):
                return "s3:PutObject", arn
        object_actions = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject"}
        if method in object_actions and not (set(query) & {"acl", "tagging", "uploadId"}):
            return object_actions[method], arn
    elif method in ("GET", "HEAD") and not (set(query) - LISTING_PARAMETERS):
        return "s3:ListBucket", f"arn:aws:s3:::{bucket}"
    raise UnknownCall(f"an S3 request not known here: {method} {host}{path}?{entry['query']}")


def _json_protocol(
    entry: dict[str, Any], service: str, region: str, account: str, secret_arns: Mapping[str, str]
) -> tuple[str, str]:
    operation = entry["target"].rsplit(".", 1)[-1]
    body = json.loads(entry.get("body") or "{}")
    action = f"{service}:{operation}"
    if service == "ssm" and operation in ("GetParameter", "PutParameter", "DeleteParameter"):
        name = str(body["Name"])
        return action, f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"
    if service == "secretsmanager" and operation in ("GetSecretValue", "DescribeSecret"):
        secret = str(body["SecretId"])
        if not secret.startswith("arn:"):
            secret = secret_arns.get(
                secret, f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}"
            )
        return action, secret
    raise UnknownCall(f"a {service} call not known here: {entry['target']}")


def _query_protocol(
    entry: dict[str, Any], service: str, region: str, account: str
) -> list[tuple[str, str]]:
    form = urllib.parse.parse_qs(entry.get("body") or entry.get("query", ""))
    operation = form.get("Action", [""])[0]
    if service == "rds" and operation == "DescribeDBInstances":
        identifier = form.get("DBInstanceIdentifier", [""])[0]
        resource = f"arn:aws:rds:{region}:{account}:db:{identifier}" if identifier else "*"
        return [(f"rds:{operation}", resource)]
    if service == "monitoring" and operation == "PutMetricData":
        # No resource type (CloudWatch's authorization reference); the namespace is a condition.
        return [("cloudwatch:PutMetricData", "*")]
    if service == "ec2" and operation == "DescribeAddresses":
        return [("ec2:DescribeAddresses", "*")]  # a Describe* action has no resource type
    if service == "ec2" and operation == "AssociateAddress":
        # The allocation and the instance (a network interface or a private address instead
        # of an instance are not what the pair asks for: unknown here).
        allocation = form.get("AllocationId", [""])[0]
        instance = form.get("InstanceId", [""])[0]
        if allocation and instance and not set(form) & {"NetworkInterfaceId", "PublicIp"}:
            arn = f"arn:aws:ec2:{region}:{account}"
            return [
                ("ec2:AssociateAddress", f"{arn}:elastic-ip/{allocation}"),
                ("ec2:AssociateAddress", f"{arn}:instance/{instance}"),
            ]
    raise UnknownCall(f"a {service} call not known here: {operation or entry['path']}")
