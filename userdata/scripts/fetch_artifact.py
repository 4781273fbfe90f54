"""Install the program's files that do not fit in userdata, from S3, verified by their SHA-256.

EC2 limits userdata to 16 KiB, so the bigger files a host needs (the app's code, scripts, the
metrics agent's config) are S3 objects named by their digest. This runs first in cloud-init's
runcmd, with the system Python, Ubuntu's python3-boto3 and the instance's role, and installs
each `--file KEY SHA256 DESTINATION MODE`. A host installs exactly the bytes its userdata names,
or nothing: a download that does not match is refused. Retries are bounded (the role may need a
moment after launch), so an unreachable S3 fails the boot within about a minute instead of
hanging it; the host then never reports ready, its readiness gate fails the update and says
where to look, and the host it was to replace keeps serving.

Exit status: 0 every file installed, 1 not (the reason is printed).
"""

import argparse
import hashlib
import os
import sys
import tempfile
import time

ATTEMPTS = 6  # with the backoff and 5 s connect timeouts: at most about 70 s per file


def log(message: str) -> None:
    print(f"fetch-artifact: {message}", file=sys.stderr, flush=True)


def download(client: object, bucket: str, key: str, attempts: int = ATTEMPTS) -> bytes | None:
    for attempt in range(1, attempts + 1):
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
            return body
        except Exception as error:  # retried, then reported
            log(f"s3://{bucket}/{key} (attempt {attempt}/{attempts}): {error}")
            if attempt < attempts:
                time.sleep(min(2**attempt, 10))
    return None


def install(data: bytes, destination: str, mode: int) -> None:
    """Atomically: a half-written file is never what a service starts."""
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
    parser.add_argument("--region", required=True)
    parser.add_argument(
        "--file",
        nargs=4,
        action="append",
        required=True,
        metavar=("KEY", "SHA256", "DESTINATION", "MODE"),
    )
    args = parser.parse_args(argv)

    import boto3  # noqa: PLC0415 - the system's python3-boto3, installed by cloud-init

    # Ubuntu 24.04's boto3 reads AWS_ENDPOINT_URL by itself; older ones (the lab's) do not.
    from botocore.config import Config  # noqa: PLC0415

    # Short timeouts and no retries of boto's own: `download` bounds every file's attempts,
    # so an unreachable S3 fails the boot in about two minutes instead of hanging it.
    client = boto3.client(
        "s3",
        region_name=args.region,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(connect_timeout=5, read_timeout=15, retries={"total_max_attempts": 1}),
    )
    for key, sha256, destination, mode in args.file:
        data = download(client, args.bucket, key)
        if data is None:
            log(f"gave up on s3://{args.bucket}/{key}; {destination} not installed")
            return 1
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            log(f"s3://{args.bucket}/{key} has sha256 {digest}, not {sha256}; refused")
            return 1
        install(data, destination, int(mode, 8))
        log(f"installed {destination} ({len(data)} bytes, sha256 {digest[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
