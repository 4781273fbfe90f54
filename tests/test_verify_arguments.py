"""`python -m tools.verify` with bad arguments and bad outputs: a usage error (exit status 2,
one clear message naming the argument or key, long values cut short), never a hang, a
traceback, or a report that blames the site for the command's own input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_verify import raw_outputs_for, write

from tools import verify
from tools.mocked_program import ROOT

LONG = "x" * 100_000


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and standard error of `main(argv)`; nothing may reach standard output."""
    status = verify.main(argv)
    captured = capsys.readouterr()
    assert captured.out == "" or status == 0, f"a usage error printed a report: {captured.out}"
    return status, captured.err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e400", "5000", "soon", LONG])
def test_a_read_back_time_that_could_hang_or_is_not_a_duration_is_a_usage_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards the hang: `--read-back-seconds nan` or `inf` made the read-back loop wait forever
    (`elapsed >= nan` is never true). The outputs would otherwise be checked against a live
    site: refusing the argument first means nothing is called."""
    outputs = write(tmp_path, raw_outputs_for("http://127.0.0.1:9"))
    status, err = run(["--outputs", outputs, "--skip-aws", f"--read-back-seconds={value}"], capsys)
    assert status == 2
    assert err.startswith("usage: python -m tools.verify")
    assert "error: argument --read-back-seconds: expected a number of seconds from 0 to" in err
    assert max(len(line) for line in err.splitlines()) < 200, "the value is cut short"


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "301"])
def test_a_timeout_that_fails_every_request_is_a_usage_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards the misreport: `--timeout 0` or `-5` failed every HTTP check ("no answer"), a
    report blaming the site for the command's own argument."""
    outputs = write(tmp_path, raw_outputs_for("http://127.0.0.1:9"))
    status, err = run(["--outputs", outputs, "--skip-aws", f"--timeout={value}"], capsys)
    assert status == 2
    assert "argument --timeout: expected a number of seconds above 0 and at most 300" in err


@pytest.mark.parametrize("value", ["eu west 1", "EU-WEST-1", "mars", LONG])
def test_a_malformed_region_is_a_usage_error_not_an_aws_failure(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = write(tmp_path, raw_outputs_for("http://127.0.0.1:9"))
    status, err = run(["--outputs", outputs, "--region", value], capsys)
    assert status == 2
    assert "argument --region: expected an AWS region name like eu-west-1" in err
    assert len(err) < 400


def test_valid_durations_and_region_are_accepted() -> None:
    args = verify.cli._parser().parse_args(
        [
            "--outputs",
            "-",
            "--timeout",
            "0.5",
            "--read-back-seconds",
            "0",
            "--region",
            "us-gov-west-1",
        ]
    )
    assert (args.timeout, args.read_back_seconds, args.region) == (0.5, 0.0, "us-gov-west-1")


def test_long_values_in_argparse_errors_are_cut_short(capsys: pytest.CaptureFixture[str]) -> None:
    """Guards 100 KB echoed back: argparse repeats unknown arguments as they are."""
    status, err = run(["--outputs", "-", f"--{LONG}"], capsys)
    assert status == 2
    assert "unrecognized arguments: --xxx" in err
    assert "…" in err
    assert len(err) < 400


def test_an_unreadable_outputs_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run(["--outputs", str(tmp_path / ("a" * 300))], capsys)
    assert status == 2
    assert "error: argument --outputs: cannot read the outputs" in err
    assert "…" in err, "the 300-character path is cut short"
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    status, err = run(["--outputs", str(tmp_path / "binary")], capsys)
    assert status == 2
    assert "cannot read the outputs" in err


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("url", "http://[::1", "url: expected an http:// or https:// URL, got 'http://[::1'"),
        ("url", "http://x:99999", "Port out of range"),
        ("url", "http://x:port", "url: expected an http:// or https:// URL"),
        ("url", "http://", "no host name"),
        ("url", "ftp://x", "scheme 'ftp'"),
        ("db_primary_endpoint", "db.example:99999", "port from 1 to 65535"),
        ("db_primary_endpoint", "db.example:²", "port from 1 to 65535"),
        ("dashboard_url", "https://[x", "dashboard_url: expected a CloudWatch console URL"),
    ],
)
def test_a_malformed_url_or_port_gives_one_clear_line(
    key: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards the tracebacks: `urlsplit` raises on `[` without `]` and on a bad port, and
    `'²'.isdigit()` is true but `int('²')` raises."""
    raw = raw_outputs_for("http://127.0.0.1:9")
    raw[key] = value
    status, err = run(["--outputs", write(tmp_path, raw), "--skip-aws"], capsys)
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_https_url_with_a_bad_port_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = raw_outputs_for("http://127.0.0.1:9")
    raw.update(https_enabled=True, https_url="https://www.example.com:70000")
    status, err = run(["--outputs", write(tmp_path, raw), "--skip-aws"], capsys)
    assert status == 2
    assert "https_url: expected an https:// URL, got 'https://www.example.com:70000'" in err


def test_long_values_in_the_outputs_are_cut_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = raw_outputs_for("http://127.0.0.1:9")
    raw.update(url=f"http://{LONG}:x", vpc_id=["vpc"] * 50_000, alarm_topic_arn=LONG)
    status, err = run(["--outputs", write(tmp_path, raw), "--skip-aws"], capsys)
    assert status == 2
    lines = err.splitlines()
    assert any(line.strip().startswith("url: ") for line in lines)
    assert any(line.strip().startswith("vpc_id: ") for line in lines)
    assert max(len(line) for line in lines) < 200, max(lines, key=len)[:300]


def test_deeply_nested_outputs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run(["--outputs", write(tmp_path, "[" * 100_000)], capsys)
    assert status == 2
    assert "nested too deeply" in err


def test_the_certificate_check_names_a_bad_url_instead_of_raising() -> None:
    check = verify.check_certificate("https://www.example.com:99999", timeout=1)
    assert not check.ok
    assert check.found.startswith("not a URL: ")


def test_python_m_tools_verify_keeps_its_interface() -> None:
    """The package's `__main__` answers as the module did: help, and usage errors with 2."""
    command = [sys.executable, "-m", "tools.verify"]
    helped = subprocess.run(
        [*command, "--help"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert helped.returncode == 0
    assert "--read-back-seconds S" in helped.stdout
    refused = subprocess.run(
        [*command, "--outputs", "-", "--read-back-seconds", "nan"],
        cwd=ROOT,
        input=json.dumps(raw_outputs_for("http://127.0.0.1:9")),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1].startswith(
        "python -m tools.verify: error: argument --read-back-seconds:"
    )
