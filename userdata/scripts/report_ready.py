"""Report that this host serves, at the end of its first boot (like CloudFormation's cfn-signal).

The last step of cloud-init on every host: wait until the host's own service answers locally
(`--check-url`: the app's health through Nginx on a web node, a request through HAProxy on the
load balancer; `--check-command`: a command that exits 0, `database_node.py check` on a database
host), then write to the host's SSM parameter which instance booted which userdata:

    {"instance_id": "i-...", "userdata_sha256": "...", "ready_at": "2026-11-26T03:12:00Z"}

`pulumi up` waits for exactly that report before it points traffic at the host (see
components/readiness_gate.py). The digest is taken over cloud-init's raw copy of the userdata,
the same bytes the program hashed. Runs with the system Python and Ubuntu's python3-boto3; the
local lab runs this same file against a stand-in for AWS (`AWS_ENDPOINT_URL`).

Exit status: 0 reported, 1 the service never answered, 2 the report could not be written.
"""

import argparse
import datetime
import hashlib
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

USERDATA = "/var/lib/cloud/instance/user-data.txt"
INSTANCE_ID = "/var/lib/cloud/data/instance-id"
WRITE_ATTEMPTS = 12  # the instance role may need a minute to be usable after launch
WRITE_DEADLINE_SECONDS = 120  # then the host gives up; its gate says where to look


def log(message: str) -> None:
    print(f"report-ready: {message}", file=sys.stderr, flush=True)


def service_answers(url: str, *, tls_unverified: bool = False) -> bool:
    context = None
    if tls_unverified:
        # The host's own listener on 127.0.0.1: its certificate names the site, not this
        # address, and is self-signed until the CA's arrives. What is checked is that it serves.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_for_service(
    url: str, timeout: float, interval: float = 2.0, *, tls_unverified: bool = False
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service_answers(url, tls_unverified=tls_unverified):
            return True
        time.sleep(interval)
    return False


def wait_for_command(
    command: str, timeout: float, interval: float = 5.0, attempt_timeout: float = 120.0
) -> bool:
    """`--check-command`: run `command` (split like a shell's words, no shell) until it exits
    0, each run at most `attempt_timeout` seconds, all of them within `timeout`."""
    words = shlex.split(command)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            result = subprocess.run(  # noqa: S603 - the host's own check, from its userdata
                words, timeout=max(min(attempt_timeout, left), 1.0), check=False
            )
            if result.returncode == 0:
                return True
            log(f"{words[0]} ... exited {result.returncode}")
        except subprocess.TimeoutExpired:
            log(f"{words[0]} ... did not finish in {attempt_timeout:g} s")
        except OSError as error:
            log(f"{words[0]} could not run: {error}")
        if time.monotonic() + interval >= deadline:
            return False
        time.sleep(interval)


def build_report(userdata_file: str, instance_id_file: str) -> dict[str, str]:
    with open(userdata_file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(instance_id_file) as f:
        instance_id = f.read().strip()
    ready_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"instance_id": instance_id, "userdata_sha256": digest, "ready_at": ready_at}


def write_report(
    parameter: str,
    region: str,
    report: dict[str, str],
    attempts: int = WRITE_ATTEMPTS,
    deadline_seconds: float = WRITE_DEADLINE_SECONDS,
) -> bool:
    import boto3  # noqa: PLC0415 - only needed once the service answers
    from botocore.config import Config  # noqa: PLC0415

    # Ubuntu 24.04's boto3 reads AWS_ENDPOINT_URL by itself; older ones (the lab's) do not.
    # Short timeouts and no retries of boto's own: the loop below bounds the whole report,
    # so an unreachable endpoint cannot hold up the end of boot for long.
    client = boto3.client(
        "ssm",
        region_name=region,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1}),
    )
    deadline = time.monotonic() + deadline_seconds
    for attempt in range(1, attempts + 1):
        if time.monotonic() > deadline:
            break
        try:
            client.put_parameter(
                Name=parameter, Value=json.dumps(report), Type="String", Overwrite=True
            )
            return True
        except Exception as error:  # retried, then reported
            log(f"writing {parameter} failed (attempt {attempt}/{attempts}): {error}")
            time.sleep(min(2**attempt, 10))
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parameter", required=True, help="SSM parameter of this host")
    parser.add_argument("--region", required=True)
    check = parser.add_mutually_exclusive_group(required=True)
    check.add_argument("--check-url", help="answers 2xx once the host serves")
    check.add_argument("--check-command", help="exits 0 once the host serves (no shell)")
    parser.add_argument(
        "--tls-unverified",
        action="store_true",
        help="an https check URL on this host: do not verify its certificate",
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for it")
    parser.add_argument(
        "--write-deadline",
        type=float,
        default=WRITE_DEADLINE_SECONDS,
        help="seconds to keep trying to write the report",
    )
    parser.add_argument("--userdata-file", default=USERDATA)
    parser.add_argument("--instance-id-file", default=INSTANCE_ID)
    args = parser.parse_args(argv)

    if args.check_command is not None:
        if not wait_for_command(args.check_command, args.timeout):
            log(f"the check command failed for {args.timeout:g} s; not reporting ready")
            return 1
    elif not wait_for_service(args.check_url, args.timeout, tls_unverified=args.tls_unverified):
        log(f"{args.check_url} did not answer within {args.timeout:g} s; not reporting ready")
        return 1
    report = build_report(args.userdata_file, args.instance_id_file)
    if not write_report(args.parameter, args.region, report, deadline_seconds=args.write_deadline):
        return 2
    log(f"reported {args.parameter} = {json.dumps(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
