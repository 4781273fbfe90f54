"""The settings loader, table-driven and without Pulumi: every bad value names key and fix."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from settings import (
    AwsProviderSettings,
    SettingsError,
    load_aws_provider_settings,
    load_settings,
    load_stack_file,
    loader,
    parsers,
)
from settings.instance_types import cpu_architecture
from settings.keys import KNOWN_KEYS
from settings.parsers import LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING
from settings.web_tier import database_connections_needed, rollout_batches, web_node_names

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_a_working_stack() -> None:
    settings = load_settings({}, stack="dev")
    assert settings.web_node_count == 2
    assert settings.db_mode == "rds"
    assert settings.nat_gateways == "single"
    assert settings.ami_ids == {}, "unpinned: Canonical's current image"
    assert settings.deletion_protection is True, "secure default: the DB is protected"
    assert settings.readiness_timeout_minutes == 15
    assert settings.db_apply_immediately is False, "changes wait for the maintenance window"
    assert settings.db_max_allocated_storage_gb > settings.db_allocated_storage_gb
    assert settings.db_backup_retention_days >= 1, "a read replica needs backups on its source"


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"webNodeCount": "4"}, "web_node_count", 4),
        ({"webNodeCount": 20, "dbInstanceClass": "db.t4g.medium"}, "web_node_count", 20),
        ({"dbMaxReplicaLagSeconds": "10"}, "db_max_replica_lag_seconds", 10),
        ({"alarmEmail": "ops@example.com"}, "alarm_email", "ops@example.com"),
        ({"logRetentionDays": "90"}, "log_retention_days", 90),
        ({"web-infra:webNodeCount": "3"}, "web_node_count", 3),
        ({"natGateways": "perAz"}, "nat_gateways", "perAz"),
        (
            {"amiIds": '{"arm64": "ami-0123456789abcdef0"}'},
            "ami_ids",
            {"arm64": "ami-0123456789abcdef0"},
        ),
        ({"amiIds": {"amd64": "ami-01234567"}}, "ami_ids", {"amd64": "ami-01234567"}),
        ({"rollingBatchSize": "3"}, "rolling_batch_size", 3),
        ({"readinessTimeoutMinutes": 30}, "readiness_timeout_minutes", 30),
        ({"dbApplyImmediately": "true"}, "db_apply_immediately", True),
        ({"dbMaxAllocatedStorageGb": "500"}, "db_max_allocated_storage_gb", 500),
        ({"deletionProtection": "false"}, "deletion_protection", False),
        ({"deletionProtection": True}, "deletion_protection", True),
        ({"dbMultiAz": "true"}, "db_multi_az", True),
        ({"vpcCidr": "172.16.0.0/20"}, "vpc_cidr", "172.16.0.0/20"),
        # The documented edges: /16 and /24 (the smallest that still splits into 4 subnets).
        ({"vpcCidr": "10.0.0.0/16"}, "vpc_cidr", "10.0.0.0/16"),
        ({"vpcCidr": "192.168.7.0/24"}, "vpc_cidr", "192.168.7.0/24"),
        ({"instanceType": "m7g.large"}, "instance_type", "m7g.large"),
        ({"dbInstanceClass": "db.r6g.large"}, "db_instance_class", "db.r6g.large"),
        ({"aws:region": "eu-west-1"}, "web_node_count", 2),
        (
            {"domain": "WWW.Example.com.", "acmeEmail": "ops@example.com"},
            "domain",
            "www.example.com",
        ),
        ({"domain": "shop.example.co.uk", "acmeEmail": "a@b.io"}, "acme_email", "a@b.io"),
        (
            {"acmeDirectoryUrl": LETS_ENCRYPT_STAGING},
            "acme_directory_url",
            LETS_ENCRYPT_STAGING,
        ),
        (
            {"domain": "example.com", "acmeEmail": "a@b.io", "publicZoneId": "Z0123456789ABCDEF"},
            "public_zone_id",
            "Z0123456789ABCDEF",
        ),
        ({"hsts": "false"}, "hsts", False),
        ({"hstsMaxAgeSeconds": "86400"}, "hsts_max_age_seconds", 86400),
    ],
)
def test_accepts_good_values(raw: dict[str, object], field: str, expected: object) -> None:
    assert getattr(load_settings(raw, stack="dev"), field) == expected


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("webNodeCount", "1", "a whole number from 2 to 20"),
        ("webNodeCount", 21, "a whole number from 2 to 20"),
        ("webNodeCount", "two", "a whole number from 2 to 20"),
        ("webNodeCount", True, "a whole number from 2 to 20"),
        ("webNodeCount", "2.5", "a whole number from 2 to 20"),
        ("dbMode", "aurora", "one of 'rds', 'ec2', 'colocated'"),
        ("dbInstanceType", "db.t4g.micro", "an EC2 instance type such as t4g.small"),
        ("natGateways", "none", "one of 'single', 'perAz'"),
        ("vpcCidr", "10.0.0.0/33", "a private IPv4 CIDR"),
        ("vpcCidr", "10.0.0.1/16", "a private IPv4 CIDR"),
        ("vpcCidr", "8.8.0.0/16", "a private IPv4 CIDR"),
        ("vpcCidr", "10.0.0.0/8", "from /16 to /24"),
        ("amiIds", '{"amd64": "ubuntu-24.04"}', "'ubuntu-24.04' is not an AMI id"),
        ("amiIds", '{"x86_64": "ami-0123456789abcdef0"}', "architectures are amd64, arm64"),
        ("amiIds", "ami-0123456789abcdef0", "a map of CPU architecture to AMI id"),
        ("rollingBatchSize", "0", "a whole number from 1 to 20"),
        ("readinessTimeoutMinutes", "1", "a whole number from 3 to 120"),
        ("dbApplyImmediately", "now", "true or false"),
        ("dbMaxReplicaLagSeconds", "0", "a whole number from 1 to 300"),
        ("alarmEmail", "ops", "an e-mail address"),
        ("logRetentionDays", "10", "one of 1, 3, 5, 7, 14, 30"),
        ("deletionProtection", "yes", "true or false"),
        ("instanceType", "T3 small", "an EC2 instance type"),
        ("dbInstanceClass", "t4g.micro", "an RDS instance class"),
        ("dbBackupRetentionDays", "0", "from 1 to 35"),
        ("dbAllocatedStorageGb", "10", "from 20 to 16384"),
        ("domain", "https://www.example.com", "a DNS name you control"),
        ("domain", "*.example.com", "no scheme, path, port or wildcard"),
        ("domain", "localhost", "a DNS name you control"),
        ("domain", "203.0.113.7", "a DNS name you control"),
        ("domain", "example.com:443", "a DNS name you control"),
        ("acmeEmail", "ops at example.com", "an e-mail address"),
        ("acmeDirectoryUrl", "http://acme.example/dir", "an https:// ACME directory URL"),
        ("publicZoneId", "example.com", "a Route 53 hosted zone id"),
        ("hsts", "on", "true or false"),
        ("hstsMaxAgeSeconds", "63072001", "a whole number from 300 to 63072000"),
    ],
)
def test_rejects_bad_values_naming_key_value_and_fix(key: str, value: object, allowed: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({key: value}, stack="dev")
    message = str(error.value)
    assert f"web-infra:{key} = {value!r}" in message
    assert allowed in message
    assert "pulumi config set" in message


def test_https_defaults_are_self_signed_without_a_domain_and_lets_encrypt_with_one() -> None:
    settings = load_settings({}, stack="dev")
    assert settings.domain is None, "no domain: HTTPS with a self-signed certificate"
    assert settings.acme_directory_url == LETS_ENCRYPT_PRODUCTION
    assert settings.hsts is True
    assert settings.hsts_max_age_seconds == 63072000, "Mozilla's two years"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"domain": "www.example.com"}, "needs an ACME account e-mail"),
        ({"acmeEmail": "ops@example.com"}, "acmeEmail has no effect without a domain"),
        ({"publicZoneId": "Z0123456789ABCDEF"}, "publicZoneId has no effect without a domain"),
    ],
)
def test_https_keys_that_belong_together(raw: dict[str, object], problem: str) -> None:
    """A domain without an ACME contact, or ACME keys without a domain, is a mistake to fix
    before anything is created, not a silently ignored setting."""
    with pytest.raises(SettingsError, match=problem) as error:
        load_settings(raw, stack="dev")
    assert "web-infra:" in str(error.value)


def test_misspelt_key_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(SettingsError, match=r"webNodeCont .*did you mean web-infra:webNodeCount"):
        load_settings({"web-infra:webNodeCont": "3"}, stack="dev")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"webNodeCount": "0", "dbMode": "x", "vpcCidr": "nope"}, stack="dev")
    assert str(error.value).count("\n  - ") == 3


def test_names_are_derived_safely_from_odd_stack_names() -> None:
    """A stack name that is not already a valid, short DNS label is slugged and gets a hash
    of the original, so that `Team_A.Prod` and `team-a-prod` stay two stacks."""
    assert load_settings({}, stack="team-a-prod").name_prefix == "web-infra-team-a-prod"
    settings = load_settings({}, stack="Team_A.Prod")
    assert re.fullmatch(r"web-infra-team-a-prod-[0-9a-f]{6}", settings.name_prefix)
    assert settings.internal_zone == f"{settings.name_prefix[10:]}.web-infra.internal"
    assert settings.db_primary_identifier == f"{settings.name_prefix}-primary"
    long = load_settings({}, stack="x" * 80)
    assert len(long.db_replica_identifier) <= 63
    assert long.db_primary_identifier != long.db_replica_identifier


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [
        ("t3.small", "amd64"),
        ("t4g.micro", "arm64"),
        ("m7g.large", "arm64"),
        ("c7gn.xlarge", "arm64"),
        ("g5.xlarge", "amd64"),
        ("g4dn.xlarge", "amd64"),
        ("m7i-flex.large", "amd64"),
    ],
)
def test_cpu_architecture_follows_the_instance_family(instance_type: str, arch: str) -> None:
    assert cpu_architecture(instance_type) == arch


def test_the_dev_stack_file_is_valid_and_uses_only_known_keys() -> None:
    settings = load_stack_file(ROOT / "Pulumi.dev.yaml")
    assert settings.stack == "dev"
    assert settings.web_node_count >= 2
    assert set(KNOWN_KEYS) >= {"webNodeCount", "amiIds", "rollingBatchSize", "deletionProtection"}


@pytest.mark.parametrize(
    ("key", "fix"),
    [
        ("adminCidrs", "use Session Manager"),
        ("amiId", "web-infra:amiIds.amd64"),
    ],
)
def test_removed_keys_say_what_replaced_them(key: str, fix: str) -> None:
    """A stack file from an earlier version gets a way forward, not "not a setting"."""
    with pytest.raises(SettingsError, match=rf"web-infra:{key} is no longer a setting:.*{fix}"):
        load_settings({key: "[]"}, stack="dev")


def test_the_database_class_must_take_every_connection_the_web_tier_may_open() -> None:
    """Guards against a scale-out that exhausts max_connections: each node's workers pool
    connections to each database; the class's default limit must hold them all."""
    with pytest.raises(SettingsError) as error:
        load_settings({"webNodeCount": 5}, stack="dev")
    message = str(error.value)
    assert "webNodeCount = 5 may open 70 connections to each database" in message
    assert "db.t4g.micro allows about 61" in message
    assert "or at most 4 web nodes" in message
    assert load_settings({"webNodeCount": 4}, stack="dev").web_node_count == 4
    big = load_settings({"webNodeCount": 20, "dbInstanceClass": "db.r6g.large"}, stack="dev")
    assert database_connections_needed(big.web_node_count) == 250
    with pytest.raises(SettingsError, match=r"dbInstanceClass = 'db\.z9\.huge' is not allowed"):
        load_settings({"dbInstanceClass": "db.z9.huge"}, stack="dev")


def test_storage_limit_must_let_storage_grow() -> None:
    with pytest.raises(SettingsError, match="dbMaxAllocatedStorageGb = 100 must be larger"):
        load_settings({"dbAllocatedStorageGb": 100, "dbMaxAllocatedStorageGb": 100}, stack="dev")


@pytest.mark.parametrize(
    ("count", "batch_size", "expected_sizes"),
    [
        (2, None, [1, 1]),
        (4, None, [1, 1, 1, 1]),
        (5, None, [1, 2, 2]),
        (20, None, [1, 5, 5, 5, 4]),
        (20, 19, [1, 19]),
        (3, 10, [1, 2]),
    ],
)
def test_rollout_starts_with_one_canary_then_bounded_batches(
    count: int, batch_size: int | None, expected_sizes: list[int]
) -> None:
    """Guards the blast radius of a bad release: the first batch is one node, no batch is
    larger than asked, and every node is in exactly one batch, in order."""
    nodes = web_node_names(count)
    batches = rollout_batches(nodes, batch_size)
    assert [len(b) for b in batches] == expected_sizes
    assert [n for b in batches for n in b] == nodes


def test_aws_settings_are_honoured_or_refused() -> None:
    """An explicit provider ignores aws:* config by itself; a silently ignored aws:profile or
    aws:allowedAccountIds could deploy to the wrong account."""
    aws = load_aws_provider_settings(
        {
            "aws:region": "eu-west-1",
            "aws:profile": "prod-deployer",
            "aws:allowedAccountIds": '["123456789012"]',
            "aws:defaultTags": '{"tags": {"CostCenter": "42"}}',
            "web-infra:webNodeCount": "2",
        }
    )
    assert aws == AwsProviderSettings(
        region="eu-west-1",
        profile="prod-deployer",
        allowed_account_ids=("123456789012",),
        default_tags={"CostCenter": "42"},
    )
    with pytest.raises(SettingsError) as error:
        load_settings({"aws:assumeRoles": "[]", "aws:allowedAccountIds": "[42]"}, stack="dev")
    message = str(error.value)
    assert "aws:assumeRoles is not honoured" in message
    assert "pulumi config rm aws:assumeRoles" in message
    assert "aws:allowedAccountIds = '[42]' is not allowed; use a list of 12-digit" in message


def test_database_on_ec2_has_its_own_keys_and_defaults() -> None:
    settings = load_settings({"dbMode": "ec2"}, stack="dev")
    assert (settings.db_mode, settings.db_instance_type) == ("ec2", "t4g.small")
    sized = load_settings(
        {"dbMode": "ec2", "dbInstanceType": "m7g.large", "dbAllocatedStorageGb": 200},
        stack="dev",
    )
    # The volume's size alone: RDS's autoscaling ceiling is not a rule of the hosts' volumes.
    assert (sized.db_instance_type, sized.db_allocated_storage_gb) == ("m7g.large", 200)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dbInstanceClass", "db.t4g.small"),
        ("dbMultiAz", True),
        ("dbApplyImmediately", False),
        ("dbMaxAllocatedStorageGb", 200),
    ],
)
def test_rds_keys_are_refused_on_ec2_with_a_fix(key: str, value: object) -> None:
    """A key nothing reads is refused, not ignored: even set to its default value."""
    with pytest.raises(SettingsError) as error:
        load_settings({"dbMode": "ec2", key: value}, stack="dev")
    message = str(error.value)
    assert f"web-infra:{key} configures RDS" in message
    assert f"pulumi config rm web-infra:{key}" in message
    assert message.count("configures RDS") == 1
    assert load_settings({"dbMode": "rds", key: value}, stack="dev").db_mode == "rds"


def test_the_database_hosts_type_is_refused_with_rds() -> None:
    for raw in ({"dbInstanceType": "t4g.small"}, {"dbMode": "rds", "dbInstanceType": "t3.large"}):
        with pytest.raises(SettingsError) as error:
            load_settings(raw, stack="dev")
        assert "web-infra:dbInstanceType configures the database hosts" in str(error.value)
        assert "pulumi config rm web-infra:dbInstanceType" in str(error.value)


def test_colocated_runs_the_database_on_web_1_and_web_2_with_the_web_tier_s_type() -> None:
    settings = load_settings({"dbMode": "colocated", "instanceType": "t3.medium"}, stack="dev")
    assert (settings.db_mode, settings.instance_type) == ("colocated", "t3.medium")
    assert settings.web_node_names[:2] == ["web-1", "web-2"]


def test_colocated_needs_two_web_nodes_and_says_why() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"dbMode": "colocated", "webNodeCount": 1}, stack="dev")
    message = str(error.value)
    assert "dbMode = 'colocated' runs the primary on web-1 and the replica on web-2" in message
    assert "`pulumi config set web-infra:webNodeCount 2`" in message
    # Only with colocated: the node count's own rule speaks for the other modes.
    with pytest.raises(SettingsError) as error:
        load_settings({"dbMode": "ec2", "webNodeCount": 1}, stack="dev")
    assert "colocated" not in str(error.value)


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("dbInstanceClass", "db.t4g.small", "set web-infra:dbMode rds"),
        ("dbMultiAz", False, "set web-infra:dbMode rds"),
        ("dbApplyImmediately", True, "set web-infra:dbMode rds"),
        ("dbMaxAllocatedStorageGb", 200, "set web-infra:dbMode rds"),
        ("dbInstanceType", "t4g.small", "set web-infra:dbMode ec2"),
    ],
)
def test_keys_of_the_other_modes_are_refused_when_colocated_with_a_fix(
    key: str, value: object, fix: str
) -> None:
    """Even at its default: the database runs on the web nodes, of `instanceType`."""
    with pytest.raises(SettingsError) as error:
        load_settings({"dbMode": "colocated", key: value}, stack="dev")
    message = str(error.value)
    assert f"web-infra:{key} configures" in message
    assert "dbMode = 'colocated' runs the database on web-1 and web-2" in message
    assert f"pulumi config rm web-infra:{key}" in message
    assert fix in message
    assert message.count(" configures ") == 1


@pytest.mark.parametrize("mode", ["ec2", "colocated"])
def test_the_database_hosts_take_every_connection_the_largest_web_tier_may_open(mode: str) -> None:
    """The RDS class's limit does not apply to MariaDB on the stack's own hosts: they set
    max_connections for 20 nodes (MariaDB's default, 151, would stop at 11)."""
    settings = load_settings({"dbMode": mode, "webNodeCount": 20}, stack="dev")
    assert settings.web_node_count == 20
    assert loader.MARIADB_MAX_CONNECTIONS == database_connections_needed(20) == 250


def test_a_web_tier_beyond_the_database_hosts_limit_is_refused_with_what_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should the node limit ever outgrow the hosts' max_connections, the settings say so."""
    monkeypatch.setattr(loader, "MARIADB_MAX_CONNECTIONS", 151)
    assert load_settings({"dbMode": "ec2", "webNodeCount": 11}, stack="dev").web_node_count == 11
    with pytest.raises(SettingsError) as error:
        load_settings({"dbMode": "colocated", "webNodeCount": 12}, stack="dev")
    assert "webNodeCount = 12 may open 154 connections" in str(error.value)
    assert "MariaDB on the database hosts allows 151" in str(error.value)
    assert "at most 11 web nodes with web-infra:dbMode = 'colocated'" in str(error.value)


# --- the value parsers on their own: bounds, what they return, what their refusals say ---


def refusal(parse: Callable[[Any], Any], raw: object) -> str:
    """What `parse` says when it refuses `raw`; the test fails if it takes it."""
    try:
        accepted = parse(raw)
    except ValueError as error:
        return str(error)
    pytest.fail(f"{raw!r} was taken as {accepted!r}")


@pytest.mark.parametrize(("low", "high"), [(2, 20), (3, 120), (0, 100)])
def test_a_whole_number_range_includes_both_ends_and_nothing_beyond(low: int, high: int) -> None:
    parse = parsers.integer(low, high)
    assert parse(low) == low
    assert parse(str(high)) == high
    for outside in (low - 1, high + 1, str(high + 1)):
        with pytest.raises(ValueError, match=rf"^a whole number from {low} to {high}$"):
            parse(outside)


@pytest.mark.parametrize("raw", ["two", "3.0", "1e1", " 3", True, 3.0, None, [3]])
def test_only_plain_whole_numbers_are_whole_numbers(raw: object) -> None:
    with pytest.raises(ValueError, match="a whole number from 1 to 10"):
        parsers.integer(1, 10)(raw)


def test_a_choice_returns_the_value_chosen_and_names_every_option_when_refused() -> None:
    parse = parsers.choice("single", "perAz")
    assert parse("perAz") == "perAz"
    assert parse("single") == "single"
    for wrong in ("PerAz", "none", "", 1, None, ["single"]):
        assert refusal(parse, wrong) == "one of 'single', 'perAz'"


def test_a_pattern_parser_takes_whole_matches_of_text_only() -> None:
    parse = parsers.matching(parsers.HOSTED_ZONE_ID, "a Route 53 hosted zone id")
    assert parse("Z0123456789ABCDEF") == "Z0123456789ABCDEF"
    for wrong in ("z0123456789abcdef", "Z0123456789ABCDEF\n", "xZ0123456789", 12345, None):
        assert refusal(parse, wrong) == "a Route 53 hosted zone id"


def test_an_instance_type_must_exist_and_boot_ubuntu() -> None:
    parse = parsers.instance_type("t3.small")
    assert parse("t3.small") == "t3.small"
    assert parse("m7g.large") == "m7g.large"
    for wrong in ("t3.huge", "T3.SMALL", "", 3, None):
        message = refusal(parse, wrong)
        assert message.startswith("an EC2 instance type such as t3.small")
        assert "a type newer than the locked boto3 needs a boto3 bump" in message
        assert "macOS" not in message
    with pytest.raises(ValueError, match=r"such as t3\.small .*; Mac instances boot macOS only"):
        parse("mac2.metal")


@pytest.mark.parametrize(
    "address",
    [
        "ops@example.com",
        "first.last+alerts@mail.example.co.uk",
        "ops_team%1@example.org",
        "ops@lab.test",  # the labs' own ACME server and mail use the reserved .test domain
        "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com",  # 254: the most
    ],
)
def test_an_e_mail_address_is_taken_as_written(address: str) -> None:
    assert parsers.email("for the alarms")(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "ops",
        "ops at example.com",
        "mailto:ops@example.com",
        "ops$(id)@example.com",
        "o'brien@example.com",
        '"ops"@example.com',
        "ops;x@example.com",
        ".ops@example.com",
        "ops.@example.com",
        "ops@example",
        "ops@localhost",
        "ops@@example.com",
        "ops@example.com\n",
        "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com",  # 255
        42,
        None,
    ],
)
def test_an_e_mail_address_a_shell_or_template_could_misread_is_refused(address: object) -> None:
    message = refusal(parsers.email("for the alarms"), address)
    assert message.startswith("an e-mail address for the alarms, like ops@example.com")
    assert "letters, digits and . _ % + - before the @" in message
    assert "no spaces, quotes, scheme (mailto:) or control characters" in message


def test_an_e_mail_address_the_validator_rejects_says_why() -> None:
    with pytest.raises(ValueError, match=r"an e-mail address for the ACME account.*\(.*period"):
        parsers.email("for the ACME account")("ops@localhost")


def test_an_e_mail_address_in_another_case_is_refused_with_its_usual_spelling() -> None:
    with pytest.raises(ValueError, match=r"; write it as ops@example\.com$"):
        parsers.email("for the alarms")("ops@EXAMPLE.COM")


def test_one_of_some_numbers_accepts_each_and_lists_them_when_refused() -> None:
    parse = parsers.one_of_numbers((1, 3, 7))
    assert parse("3") == 3
    assert parse(7) == 7
    for wrong in ("2", 8, "seven", True, None):
        assert refusal(parse, wrong) == "one of 1, 3, 7"


# --- the stack's config as a whole: empty values, unknown keys and namespaces, the message ---


def problems_of(raw: dict[Any, object], stack: str = "dev") -> str:
    with pytest.raises(SettingsError) as error:
        load_settings(raw, stack=stack)
    return str(error.value)


def test_a_key_left_empty_takes_its_default() -> None:
    """`webNodeCount:` with no value in a stack file is YAML's null: the default, not an error."""
    settings = load_settings({"webNodeCount": None, "web-infra:hsts": None}, stack="dev")
    assert settings.web_node_count == 2
    assert settings.hsts is True


def test_the_error_lists_each_problem_on_its_own_line_and_says_how_to_fix_them() -> None:
    assert problems_of({"natGateways": "none", "web-infra:hsts": "on"}) == (
        "invalid stack configuration:\n"
        "  - web-infra:natGateways = 'none' is not allowed; use one of 'single', 'perAz'\n"
        "  - web-infra:hsts = 'on' is not allowed; use true or false\n"
        "fix it with `pulumi config set web-infra:<key> <value>` or in Pulumi.<stack>.yaml"
    )


def test_a_key_like_no_setting_lists_the_known_keys() -> None:
    message = problems_of({"frobnicate": "1"})
    assert (
        "web-infra:frobnicate is not a setting of this program; known keys: "
        + ", ".join(KNOWN_KEYS)
    ) in message


def test_removed_and_unknown_keys_are_each_named_in_order() -> None:
    message = problems_of({"amiId": "ami-01234567", "adminCidrs": "[]", "zzz": 1, "aaa": 2})
    lines = [line for line in message.splitlines() if line.startswith("  - ")]
    assert [line.split()[1] for line in lines] == [
        "web-infra:adminCidrs",
        "web-infra:amiId",
        "web-infra:aaa",
        "web-infra:zzz",
    ]


def test_a_key_that_is_not_text_is_refused() -> None:
    assert (
        "the key 42 is not a config key; keys are text such as web-infra:webNodeCount"
        in problems_of({42: "x"})
    )


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("web-infa:instanceTyp", "did you mean web-infra:instanceType?"),
        ("webinfra:qqqqqq", "did you mean web-infra:qqqqqq?"),
        ("aw:region", "did you mean aws:region?"),
        ("pulumii:template", "did you mean pulumi:template?"),
        ("gcp:project", "this program reads the namespaces web-infra:, aws:, pulumi:, random:"),
    ],
)
def test_a_key_in_a_misspelt_or_foreign_namespace_is_refused_with_a_hint(
    key: str, hint: str
) -> None:
    message = problems_of({key: "x"})
    assert f"{key} is in a namespace no part of this program reads; {hint}" in message


def test_keys_of_pulumis_and_the_random_providers_namespaces_are_left_to_them() -> None:
    settings = load_settings(
        {"pulumi:disable-default-providers": '["*"]', "random:seed": "1"}, stack="dev"
    )
    assert settings.web_node_count == 2


def test_settings_carry_the_project_and_the_stack() -> None:
    settings = load_settings({}, project="shop", stack="prod")
    assert (settings.project, settings.stack) == ("shop", "prod")
    assert settings.name_prefix == "shop-prod"
    assert load_settings({}, stack="prod").project == "web-infra"


def test_a_bad_stack_name_is_reported_with_the_other_problems() -> None:
    message = problems_of({"dbMode": "x"}, stack="my stack")
    assert "web-infra:dbMode = 'x' is not allowed" in message
    assert "stack name 'my stack' is not allowed" in message


def test_storage_may_grow_by_as_little_as_one_gib() -> None:
    settings = load_settings(
        {"dbAllocatedStorageGb": 100, "dbMaxAllocatedStorageGb": 101}, stack="dev"
    )
    assert settings.db_max_allocated_storage_gb == 101
    assert "dbMaxAllocatedStorageGb = 99 must be larger than dbAllocatedStorageGb = 100" in (
        problems_of({"dbAllocatedStorageGb": 100, "dbMaxAllocatedStorageGb": 99})
    )


def test_the_largest_web_tier_a_database_class_takes_is_accepted() -> None:
    """db.t4g.micro allows about 61 connections: 4 nodes need 58, 5 need 70."""
    assert database_connections_needed(4) == 58
    assert load_settings({"webNodeCount": 4}, stack="dev").web_node_count == 4
    message = problems_of({"webNodeCount": 5, "dbInstanceClass": "db.t3.micro"})
    assert (
        "web-infra:webNodeCount = 5 may open 70 connections to each database, but db.t3.micro "
        "allows about 61: use a larger dbInstanceClass (e.g. db.t4g.medium allows about 311) or "
        "at most 4 web nodes"
    ) in message


def test_a_domain_with_its_acme_address_and_zone_is_one_working_whole() -> None:
    settings = load_settings(
        {"domain": "www.example.com", "acmeEmail": "ops@example.com", "publicZoneId": "Z0123ABC"},
        stack="dev",
    )
    assert (settings.domain, settings.acme_email, settings.public_zone_id) == (
        "www.example.com",
        "ops@example.com",
        "Z0123ABC",
    )
    message = problems_of({"domain": "www.example.com"})
    assert (
        "web-infra:domain = 'www.example.com' needs an ACME account e-mail (the CA writes to it "
        "before a certificate expires); set web-infra:acmeEmail"
    ) in message
    message = problems_of({"publicZoneId": "Z0123ABC"})
    assert (
        "web-infra:publicZoneId has no effect without a domain; set web-infra:domain (the "
        "site's DNS name) or remove it with `pulumi config rm web-infra:publicZoneId`"
    ) in message


def test_every_key_in_a_wrong_namespace_is_named_not_just_the_first() -> None:
    message = problems_of(
        {"aws:region": "eu-west-1", 7: "x", "web-infa:instanceType": "t3.small", 8: "y"}
    )
    assert "the key 7 is not a config key" in message
    assert "the key 8 is not a config key" in message
    assert "web-infa:instanceType is in a namespace no part of this program reads" in message


def test_a_database_class_whose_memory_is_unknown_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The class pattern and the memory table are kept apart: a class the pattern takes but the
    table cannot size is an error on that key, not a crash or an unchecked tier."""

    def unknown(instance_class: str) -> float:
        raise ValueError(f"cannot tell the memory of RDS class {instance_class!r}")

    monkeypatch.setattr(loader, "rds_class_memory_gib", unknown)
    assert (
        "web-infra:dbInstanceClass = 'db.r6g.large': cannot tell the memory of RDS class "
        "'db.r6g.large'"
    ) in problems_of({"dbInstanceClass": "db.r6g.large"})


def test_a_web_tier_that_needs_exactly_the_database_limit_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loader, "estimated_max_connections", lambda _memory: 58)
    assert load_settings({"webNodeCount": 4}, stack="dev").web_node_count == 4
    assert "may open 70 connections to each database, but db.t4g.micro allows about 58" in (
        problems_of({"webNodeCount": 5})
    )


VPC_CIDR_RULE = (
    "a private IPv4 CIDR in an RFC 1918 range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) "
    "from /16 to /24 with no host bits set, e.g. 10.20.0.0/16"
)


def test_a_vpc_range_is_private_and_from_16_to_24_bits() -> None:
    for good in ("10.0.0.0/16", "172.31.0.0/16", "192.168.10.0/24", "10.20.0.0/20"):
        assert parsers.vpc_cidr(good) == good
    for wrong in (
        "10.0.0.0/15",
        "10.0.0.0/25",
        "10.0.0.1/16",
        "100.64.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/16",
        "172.32.0.0/16",
        "300.0.0.0/16",
        "10.0.0.0",
        "10.0.0.0/16\n",
        " 10.0.0.0/16",
        1016,
        None,
    ):
        assert refusal(parsers.vpc_cidr, wrong) == VPC_CIDR_RULE


AMI_IDS_RULE = (
    "a map of CPU architecture to AMI id, e.g. {amd64: ami-0123456789abcdef0} "
    "(`python -m tools.ami --stack <stack> --write` pins Canonical's current images)"
)


def test_an_empty_image_map_leaves_every_architecture_unpinned() -> None:
    """`pulumi config set web-infra:amiIds ""` (or spaces) pins nothing, as no key does."""
    assert parsers.ami_ids("") == {}
    assert parsers.ami_ids("  ") == {}
    assert parsers.ami_ids("{}") == {}


@pytest.mark.parametrize(
    "raw", ['["ami-0123456789abcdef0"]', "ami-0123456789abcdef0", "{", 42, None, "[" * 5000]
)
def test_an_image_map_that_is_not_a_map_says_what_one_looks_like(raw: object) -> None:
    assert refusal(parsers.ami_ids, raw) == AMI_IDS_RULE


def test_true_or_false_is_all_a_switch_takes() -> None:
    assert parsers.boolean("TRUE") is True
    assert parsers.boolean("False") is False
    for wrong in ("yes", "1", 1, 0, None, "true "):
        assert refusal(parsers.boolean, wrong) == "true or false"


def test_a_domain_is_written_in_ascii_letters_digits_hyphens_and_dots() -> None:
    rule = (
        "a DNS name you control, such as www.example.com (letters, digits, hyphens and dots; "
        "no scheme, path, port or wildcard)"
    )
    assert parsers.domain("xn--bcher-kva.example") == "xn--bcher-kva.example"
    for wrong in ("bücher.example", "www.example.com/", "-a.example.com", 42, None):
        assert refusal(parsers.domain, wrong) == rule


def test_an_acme_server_is_any_https_directory_url_without_shell_characters() -> None:
    rule = (
        f"an https:// ACME directory URL: {LETS_ENCRYPT_PRODUCTION} (the default) or, for "
        f"trials, Let's Encrypt's staging server {LETS_ENCRYPT_STAGING}"
    )
    for good in (
        LETS_ENCRYPT_PRODUCTION,
        LETS_ENCRYPT_STAGING,
        "https://CA.Example.test:14000/Directory",
    ):
        assert parsers.acme_directory_url(good) == good
    for wrong in (
        "http://acme.example/dir",
        "https://acme.example",
        "https://acme.example/dir;reboot",
        "https://acme.example/$(id)",
        "https://acme.example/a b",
        None,
    ):
        assert refusal(parsers.acme_directory_url, wrong) == rule


def test_an_unknown_instance_type_is_refused_with_the_whole_rule() -> None:
    assert refusal(parsers.instance_type("t3.micro"), "t3.huge") == (
        "an EC2 instance type such as t3.micro (families like t3, t4g, m7i, c7g; a type newer "
        "than the locked boto3 needs a boto3 bump)"
    )
