"""`python -m tools.ami`: pinning Canonical's current images in a stack file, comments kept."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from settings import load_stack_file
from tools import ami

ROOT = Path(__file__).resolve().parent.parent
AMD64 = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
ARM64 = "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"


def canonical(answers: dict[str, str]) -> tuple[object, Stubber]:
    """An SSM client that answers Canonical's public parameters (no AWS here)."""
    client = boto3.client(
        "ssm", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    for name, value in answers.items():
        stubber.add_response(
            "get_parameter",
            {"Parameter": {"Name": name, "Value": value, "Type": "String"}},
            {"Name": name},
        )
    stubber.activate()
    return client, stubber


def test_write_pins_each_architecture_in_use_and_keeps_the_rest_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    original = (ROOT / "Pulumi.dev.yaml").read_text()
    stack.write_text(original.replace("t3.micro", "t4g.micro"))  # an arm64 load balancer
    client, stubber = canonical({AMD64: "ami-0aaaaaaaaaaaaaaaa", ARM64: "ami-0bbbbbbbbbbbbbbbb"})
    assert ami.main(["--file", str(stack), "--write"], ssm=client) == 0
    stubber.assert_no_pending_responses()
    settings = load_stack_file(stack)
    assert settings.ami_ids == {"amd64": "ami-0aaaaaaaaaaaaaaaa", "arm64": "ami-0bbbbbbbbbbbbbbbb"}
    text = stack.read_text()
    for line in original.splitlines():
        if line.startswith("#") or "deletionProtection" in line:
            assert line in text, f"lost: {line}"
    output = capsys.readouterr().out
    assert "amd64  -       ami-0aaaaaaaaaaaaaaaa" in output.replace("  ", " ").replace(
        " ", "  "
    ) or ("not pinned" in output)


def test_a_newer_image_is_reported_and_replaces_only_the_pin(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text(
        "config:\n"
        "  aws:region: eu-central-1\n"
        "  web-infra:amiIds:\n"
        "    amd64: ami-0aaaaaaaaaaaaaaaa\n"
        "  web-infra:webNodeCount: 4  # kept\n"
    )
    client, _ = canonical({AMD64: "ami-0cccccccccccccccc"})
    current = ami.current_images(client, ["amd64"])
    pinned = load_stack_file(stack).ami_ids
    assert "a newer image exists" in ami.table(pinned, current)
    stack.write_text(ami.pin(stack.read_text(), current))
    document = yaml.safe_load(stack.read_text())
    assert document["config"]["web-infra:amiIds"] == current
    assert document["config"]["web-infra:webNodeCount"] == 4
    assert "# kept" in stack.read_text()
    assert "up to date" in ami.table(load_stack_file(stack).ami_ids, current)


def test_a_stack_without_region_or_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ami.main(["--file", str(tmp_path / "Pulumi.nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text("config:\n  web-infra:webNodeCount: 2\n")
    assert ami.main(["--file", str(stack)]) == 2
    assert "sets no aws:region; pass --region" in capsys.readouterr().err


def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine with no AWS credentials anywhere (the common case for a first run)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_no_credentials_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards the traceback botocore's NoCredentialsError used to print."""
    no_credentials(monkeypatch, tmp_path)
    assert ami.main(["--file", str(ROOT / "Pulumi.dev.yaml")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("python -m tools.ami: no AWS credentials found; set AWS_PROFILE")
    assert "Traceback" not in error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--stack", "a/b"], "argument --stack: 'a/b' is not allowed; use a stack name"),
        (["--stack", "dev\n"], "argument --stack: 'dev\\n' is not allowed"),
        (["--region", "x" * 1000], "argument --region: 'xxxx"),
        (["--region", "eu-west-1\n"], "argument --region: 'eu-west-1\\n' is not allowed"),
        (["--nope"], "unrecognized arguments: --nope"),
        (["--file", "/"], "'/' does not exist or is not a file"),
        (["--file", "/nonexistent\x00"], "'/nonexistent\\x00' does not exist or is not a file"),
    ],
)
def test_bad_arguments_are_usage_errors_of_one_line(
    arguments: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = ami.main(arguments)
    except SystemExit as stop:
        status = stop.code  # type: ignore[assignment]
    assert status == 2
    error = capsys.readouterr().err
    assert says in error
    assert error.count("\n") == 1
    assert len(error) < 400, "the bad value must be cut short"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("config: [\n", "is not a valid stack file at line 2"),
        ("config: !!python/object/apply:os.system [true]\n", "no !!python or other tags"),
        ("- 1\n", "holds [1] at the top, not a mapping"),
        ("config: .inf\n", "`config:` is inf, not a mapping"),
        ("config:\n  web-infra:webNodeCount: .inf\n", "webNodeCount = inf is not allowed"),
        ("config:\n  web-infa:webNodeCount: 3\n", "did you mean web-infra:webNodeCount?"),
        ("config: " + "[" * 5000 + "]" * 5000 + "\n", "nests too deep"),
    ],
)
def test_a_broken_stack_file_is_a_usage_error_not_a_traceback(
    text: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text(text)
    assert ami.main(["--file", str(stack), "--region", "eu-west-1"]) == 2
    error = capsys.readouterr().err
    assert says in error
    assert "Traceback" not in error
