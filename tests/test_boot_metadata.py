"""The boot lab's instance metadata and recording AWS stand-ins, without booting anything.

Fast guards for what the boot tests would only show after minutes: botocore finding a host's
credentials in the metadata stand-in by itself (IMDSv2 only, as the program's instances are
launched), one host never getting another's, and the moto recorder naming the host and role
behind every call with the action and resource IAM would authorise.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.boot import aws_api, calls, metadata, network
from lab.boot.pki import CertificateAuthority

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ROOT = Path(__file__).resolve().parent.parent


def identity(host: str, role: str, address: str) -> metadata.HostIdentity:
    return metadata.new_identity(host, role, "dev", address, f"i-bootlab-{host}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def imds(tmp_path: Path) -> Iterator[tuple[str, metadata.HostIdentity]]:
    """The metadata stand-in on loopback, 127.0.0.1 being the one host it knows."""
    me = identity("web-1", "web", "127.0.0.1")
    credentials = tmp_path / "credentials.json"
    metadata.save_identities(credentials, [me, identity("web-2", "web", "169.254.77.12")])
    server = metadata.make_server(
        "127.0.0.1",
        0,
        credentials=credentials,
        region=REGION,
        account=ACCOUNT,
        log=tmp_path / "requests.jsonl",
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", me
    finally:
        server.shutdown()
        server.server_close()


def test_botocore_finds_the_hosts_role_credentials_by_itself(
    imds: tuple[str, metadata.HostIdentity],
) -> None:
    """What every script and the app on a host does without a key of its own."""
    from botocore.utils import InstanceMetadataFetcher  # noqa: PLC0415

    url, me = imds
    found = InstanceMetadataFetcher(
        timeout=2, num_attempts=1, base_url=url
    ).retrieve_iam_role_credentials()
    assert found["role_name"] == "web-infra-dev-web-1", "a role per host"
    assert (found["access_key"], found["secret_key"], found["token"]) == (
        me.access_key_id,
        me.secret_access_key,
        me.session_token,
    )
    assert me.access_key_id.startswith("ASIA")


def test_imdsv2_only_and_tokens_bound_to_their_host_and_ttl() -> None:
    web_1 = identity("web-1", "web", "169.254.77.11")
    web_2 = identity("web-2", "web", "169.254.77.12")
    service = metadata.MetadataService([web_1, web_2], REGION, ACCOUNT)
    credentials = f"/latest/meta-data/iam/security-credentials/{web_1.role_name}"

    assert service.get(web_1.address, credentials, None)[0] == 401  # IMDSv1: refused
    assert service.put_token(web_1.address, None)[0] == 400  # no TTL header
    assert service.put_token(web_1.address, "21601")[0] == 400
    assert service.put_token("169.254.77.99", "60")[0] == 403  # not a host of the lab
    status, token = service.put_token(web_1.address, "60")
    assert status == 200
    assert service.get(web_2.address, credentials, token)[0] == 401  # another host's token
    status, _, body = service.get(web_1.address, credentials, token)
    assert status == 200
    assert web_1.access_key_id in body
    assert web_2.access_key_id not in body
    assert service.get(web_1.address, "/latest/meta-data/instance-id", token)[2] == (
        "i-bootlab-web-1"
    )
    assert service.get(web_1.address, "/latest/meta-data/nothing", token)[0] == 404
    _, short = service.put_token(web_1.address, "1")
    time.sleep(1.1)
    assert service.get(web_1.address, credentials, short)[0] == 401  # expired


def test_each_container_gets_an_on_link_route_to_the_metadata_address(tmp_path: Path) -> None:
    metadata.write_route(tmp_path)
    route = (tmp_path / metadata.ROUTE_DROP_IN).read_text()
    assert f"Destination={network.METADATA}/32" in route
    assert "Scope=link" in route
    # A drop-in of the seed's own network file, so it adds to the host's address, not replaces.
    assert metadata.ROUTE_DROP_IN.parent.name == "10-bridge.network.d"


def test_the_recorder_names_the_host_role_action_and_resource_of_every_call(
    tmp_path: Path,
) -> None:
    """moto's server behind the recorder, called with two hosts' credentials over TLS."""
    import boto3  # noqa: PLC0415

    authority = CertificateAuthority(tmp_path / "pki")
    authority.create()
    pair = authority.issue("aws-api", ["localhost"], ["127.0.0.1"])
    web = identity("web-1", "web", "127.0.0.1")
    balancer = identity("load-balancer", "load-balancer", "169.254.77.10")
    metadata.save_identities(tmp_path / "credentials.json", [web, balancer])
    port = free_port()
    record = tmp_path / "calls.jsonl"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.boot.aws_api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ssl-cert",
            str(pair.certificate),
            "--ssl-key",
            str(pair.key),
            "--credentials",
            str(tmp_path / "credentials.json"),
            "--record",
            str(record),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, "the recorder's moto did not start"
            assert time.monotonic() < deadline, "the recorder's moto is not listening"
            time.sleep(0.2)

        def client(service: str, who: metadata.HostIdentity) -> object:
            return boto3.client(
                service,
                region_name=REGION,
                endpoint_url=f"https://127.0.0.1:{port}",
                verify=str(authority.certificate_path),
                aws_access_key_id=who.access_key_id,
                aws_secret_access_key=who.secret_access_key,
                aws_session_token=who.session_token,
            )

        s3 = client("s3", web)
        s3.create_bucket(  # type: ignore[attr-defined]
            Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        s3.put_object(Bucket="artifacts", Key="files/app.py", Body=b"app")  # type: ignore[attr-defined]
        s3.get_object(Bucket="artifacts", Key="files/app.py")  # type: ignore[attr-defined]
        client("ssm", balancer).put_parameter(  # type: ignore[attr-defined]
            Name="/web-infra-dev/ready/load-balancer", Value="{}", Type="String"
        )
        # Unsigned, like curl fetching a public object: named by its source address.
        context = ssl.create_default_context(cafile=str(authority.certificate_path))
        with pytest.raises(urllib.error.HTTPError) as refused:  # a private object, as on S3
            urllib.request.urlopen(
                f"https://127.0.0.1:{port}/artifacts/files/app.py", context=context
            )
        assert refused.value.code == 403
    finally:
        server.terminate()
        server.wait(timeout=30)
    entries = aws_api.read_log(record)
    unsigned = [(e["host"], e["role"], e["path"]) for e in entries if not e["signed"]]
    assert unsigned == [("web-1", "web", "/artifacts/files/app.py")]
    recorded = [
        calls.classify(e, ACCOUNT)
        for e in entries
        if e["signed"] and (e["method"], e["path"]) != ("PUT", "/artifacts")
    ]
    assert [(c.host, c.role, c.action, c.resource, c.status) for c in recorded] == [
        ("web-1", "web", "s3:PutObject", "arn:aws:s3:::artifacts/files/app.py", 200),
        ("web-1", "web", "s3:GetObject", "arn:aws:s3:::artifacts/files/app.py", 200),
        (
            "load-balancer",
            "load-balancer",
            "ssm:PutParameter",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/web-infra-dev/ready/load-balancer",
            200,
        ),
    ]


def ec2_entry(body: str) -> dict[str, object]:
    return {
        "service": "ec2",
        "region": REGION,
        "host": "load-balancer-2",
        "role": "load-balancer",
        "method": "POST",
        "path": "/",
        "query": "",
        "target": "",
        "body": body,
        "status": 200,
    }


def test_the_pairs_ec2_calls_are_named_with_every_resource_iam_checks() -> None:
    """AssociateAddress is authorised on the Elastic IP and on the instance, both."""
    associate = ec2_entry(
        "Action=AssociateAddress&Version=2016-11-15&AllocationId=eipalloc-1"
        "&InstanceId=i-0abc&AllowReassociation=true"
    )
    arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    assert [(c.action, c.resource) for c in calls.classify_all(associate, ACCOUNT)] == [
        ("ec2:AssociateAddress", f"{arn}:elastic-ip/eipalloc-1"),
        ("ec2:AssociateAddress", f"{arn}:instance/i-0abc"),
    ]
    with pytest.raises(calls.UnknownCall, match="classify_all"):
        calls.classify(associate, ACCOUNT)
    describe = ec2_entry("Action=DescribeAddresses&Version=2016-11-15&AllocationId.1=eipalloc-1")
    assert calls.classify(describe, ACCOUNT).action == "ec2:DescribeAddresses"
    with pytest.raises(calls.UnknownCall):  # an address moved by its network interface
        calls.classify_all(
            ec2_entry("Action=AssociateAddress&AllocationId=eipalloc-1&NetworkInterfaceId=eni-1"),
            ACCOUNT,
        )


def test_a_metric_report_is_named_with_the_namespace_iam_holds_it_to() -> None:
    """PutMetricData has no resource; the policies allow it for the stack's namespace only,
    which the request itself sets (`cloudwatch:namespace`)."""
    report = {
        **ec2_entry("Action=PutMetricData&Version=2010-08-01&Namespace=WebInfra%2Fweb-infra-dev"),
        "service": "monitoring",
    }
    (call,) = calls.classify_all(report, ACCOUNT)
    assert (call.action, call.resource) == ("cloudwatch:PutMetricData", "*")
    assert call.context == {"cloudwatch:namespace": "WebInfra/web-infra-dev"}
    assert calls.classify(ec2_entry("Action=DescribeAddresses"), ACCOUNT).context == {}


def test_the_public_address_rule_follows_one_holder_or_none() -> None:
    from lab.boot import elastic_ip  # noqa: PLC0415

    routed = elastic_ip.ruleset("169.254.77.9")
    assert f"ip daddr {network.PUBLIC} tcp dport {{ 80, 443 }} dnat to 169.254.77.9" in routed
    assert routed.startswith(f"flush chain ip {elastic_ip.TABLE} output\n")
    assert "dnat" not in elastic_ip.ruleset(None)
    assert 'ct timeout set "unanswered"' in elastic_ip.table()
