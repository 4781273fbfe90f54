"""The lab's stand-in for the AWS APIs its hosts call: moto's server, on the lab's own address.

Hosts report that they serve by writing their SSM parameter, exactly as on AWS: the lab runs the
shipped `report_ready.py` with `AWS_ENDPOINT_URL` pointing here, and waits for the report with
the same code as the program's readiness gate (`components.readiness_wait.wait_for_report`).
Web nodes fetch the app's code from S3 the same way. The lab creates the parameters, the
bucket and the code's objects, as the program does.
"""

from __future__ import annotations

import sys
from typing import Any

import boto3

from lab.localize import LAB_REGION

# moto accepts any credentials; these keep boto3 from looking for real ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "lab", "AWS_SECRET_ACCESS_KEY": "lab"}


def server_command(address: str, port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "--host", address, "--port", str(port)]


def endpoint(address: str, port: int) -> str:
    return f"http://{address}:{port}"


def environment(address: str, port: int) -> dict[str, str]:
    """What a host's processes need to reach the stand-in instead of AWS."""
    return {"AWS_ENDPOINT_URL": endpoint(address, port), **CREDENTIALS}


def ssm_client(address: str, port: int) -> Any:
    return client("ssm", address, port)


def client(service: str, address: str, port: int) -> Any:
    return boto3.client(
        service,
        region_name=LAB_REGION,
        endpoint_url=endpoint(address, port),
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
