"""The load balancer's certificate, made and swapped on the host: its key never leaves it.

self-signed: at first boot, so 443 serves at once (for good when the site has no domain).
obtain: run certbot until it succeeds, waiting longer after each failure (logged).
deploy: certbot's deploy hook; loads the new certificate into the running HAProxy (runtime API
`set/commit ssl cert`: no reload), then switches on the redirect to HTTPS and HSTS.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SELF_SIGNED_DAYS = 3650
ISSUED_MARKER = "issued"  # the pattern of HAProxy's `certificate_issued` ACL


def log(message: str, *, failure: bool = True) -> None:
    # certbot reports a hook's standard error as errors, so success goes to standard output.
    print(f"site-certificate: {message}", file=sys.stderr if failure else sys.stdout, flush=True)


def write_private(path: Path, data: str) -> None:
    """Atomically, readable by root only (mkstemp: 0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".site-", suffix=".pem")
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def self_signed(name: str, certificate: Path) -> int:
    if certificate.exists():
        log(f"{certificate} exists; keeping it", failure=False)
        return 0
    with tempfile.TemporaryDirectory() as work:
        key, cert = Path(work, "key.pem"), Path(work, "cert.pem")
        options = f"-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days {SELF_SIGNED_DAYS}"
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [
                *("openssl", "req", "-x509", "-nodes", *options.split(), "-keyout", str(key)),
                *(
                    "-out",
                    str(cert),
                    "-subj",
                    f"/CN={name}",
                    "-addext",
                    f"subjectAltName=DNS:{name}",
                ),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log(f"openssl could not make a certificate: {result.stderr.strip()}")
            return 1
        write_private(certificate, cert.read_text() + key.read_text())
    log(f"made a self-signed certificate for {name} in {certificate}", failure=False)
    return 0


def runtime_api(socket_path: str, command: str) -> str:
    """One command on HAProxy's admin socket; its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(socket_path)
        client.sendall(command.encode())
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer.decode(errors="replace")


def deploy(certificate: Path, socket_path: str, issued_acl: Path, lineage: str) -> int:
    live = Path(lineage)
    pem = (live / "fullchain.pem").read_text() + (live / "privkey.pem").read_text()
    try:
        # HAProxy checks the pair before it serves it; open connections finish on the old one.
        created = runtime_api(socket_path, f"set ssl cert {certificate} <<\n{pem}\n")
        committed = runtime_api(socket_path, f"commit ssl cert {certificate}\n")
        if "Transaction" not in created or "Success!" not in committed:
            runtime_api(socket_path, f"abort ssl cert {certificate}\n")
            log(f"HAProxy refused the new certificate: {(created + committed).strip()}")
            return 1
    except OSError as error:
        write_private(certificate, pem)
        log(f"HAProxy's runtime API did not answer ({error}); it loads the new one at start")
        return 1
    write_private(certificate, pem)  # what HAProxy loads when it starts
    if ISSUED_MARKER not in issued_acl.read_text().split():
        with issued_acl.open("a") as marker:
            marker.write(f"{ISSUED_MARKER}\n")
        added = runtime_api(socket_path, f"add acl {issued_acl} {ISSUED_MARKER}\n")
        if added.strip():
            log(f"HAProxy did not switch on the redirect to HTTPS: {added.strip()}")
            return 1
    log(f"HAProxy serves the certificate from {live} (no restart)", failure=False)
    return 0


def obtain(command: list[str], first_delay: float, max_delay: float) -> int:
    """Run `command` (certbot) until it succeeds, doubling the wait after each failure."""
    delay, attempt = first_delay, 1
    while True:
        result = subprocess.run(command, check=False)  # noqa: S603 - the unit's own command
        if result.returncode == 0:
            log(f"certificate obtained on attempt {attempt}", failure=False)
            return 0
        log(
            f"ACME attempt {attempt} failed (exit {result.returncode}; see certbot's log); "
            f"serving the current certificate, next attempt in {delay:g} s"
        )
        time.sleep(delay)
        delay, attempt = min(delay * 2, max_delay), attempt + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    made = steps.add_parser("self-signed")
    made.add_argument("--name", required=True)
    made.add_argument("--certificate", type=Path, required=True)
    hook = steps.add_parser("deploy")
    hook.add_argument("--certificate", type=Path, required=True)
    hook.add_argument("--socket", required=True)
    hook.add_argument("--issued-acl", type=Path, required=True)
    retry = steps.add_parser("obtain")
    retry.add_argument("--first-delay", type=float, default=60.0)
    retry.add_argument("--max-delay", type=float, default=3600.0)
    retry.add_argument("command", nargs=argparse.REMAINDER, help="-- certbot certonly ...")
    args = parser.parse_args(argv)

    if args.step == "self-signed":
        return self_signed(args.name, args.certificate)
    if args.step == "deploy":
        lineage = os.environ.get("RENEWED_LINEAGE")
        if not lineage:
            log("RENEWED_LINEAGE is not set: run this as certbot's --deploy-hook")
            return 2
        return deploy(args.certificate, args.socket, args.issued_acl, lineage)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("obtain needs the ACME client's command after --")
    return obtain(command, args.first_delay, args.max_delay)


if __name__ == "__main__":
    sys.exit(main())
