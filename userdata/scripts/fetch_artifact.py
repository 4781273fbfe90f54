"""Install one of the program's artifacts (the app's code) from S3, verified by its SHA-256.

Runs from cloud-init's runcmd with the system Python and Ubuntu's python3-boto3, with the
instance's role. The key and the digest come from the userdata, so a host installs exactly the
bytes it was launched for, or nothing: a download that does not match is refused. Retries are
bounded (the role may need a moment after launch), so a missing artifact fails the boot within
about two minutes instead of hanging it; the host then never reports ready.

Exit status: 0 installed, 1 not installed (the reason is printed).
"""

import argparse
import hashlib
import os
import sys
import tempfile
import time

ATTEMPTS = 8


def log(message: str) -> None:
    print(f"fetch-artifact: {message}", file=sys.stderr, flush=True)


def download(bucket: str, key: str, region: str, attempts: int = ATTEMPTS) -> bytes | None:
    import boto3  # noqa: PLC0415 - the system's python3-boto3, installed by cloud-init

    # Ubuntu 24.04's boto3 reads AWS_ENDPOINT_URL by itself; older ones (the lab's) do not.
    client = boto3.client(
        "s3", region_name=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None
    )
    for attempt in range(1, attempts + 1):
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except Exception as error:  # retried, then reported
            log(f"s3://{bucket}/{key} (attempt {attempt}/{attempts}): {error}")
            time.sleep(min(2**attempt, 20))
    return None


def install(data: bytes, destination: str, mode: int) -> None:
    """Atomically: a half-written file is never what the service starts."""
    folder = os.path.dirname(destination)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, destination)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--sha256", required=True, help="the digest the content must have")
    parser.add_argument("--region", required=True)
    parser.add_argument("--destination", required=True)
    parser.add_argument("--mode", default="0644")
    args = parser.parse_args(argv)

    data = download(args.bucket, args.key, args.region)
    if data is None:
        log(f"gave up on s3://{args.bucket}/{args.key}; {args.destination} not installed")
        return 1
    digest = hashlib.sha256(data).hexdigest()
    if digest != args.sha256:
        log(f"s3://{args.bucket}/{args.key} has sha256 {digest}, not {args.sha256}; refused")
        return 1
    install(data, args.destination, int(args.mode, 8))
    log(f"installed {args.destination} ({len(data)} bytes, sha256 {digest[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
