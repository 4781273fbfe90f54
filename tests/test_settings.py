"""The settings loader, table-driven and without Pulumi: every bad value names key and fix."""

from pathlib import Path

import pytest

from settings import (
    KNOWN_KEYS,
    SettingsError,
    cpu_architecture,
    load_settings,
    load_stack_file,
)

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_a_working_stack() -> None:
    settings = load_settings({}, stack="dev")
    assert settings.web_node_count == 2
    assert settings.db_mode == "rds"
    assert settings.nat_gateways == "single"
    assert settings.admin_cidrs == ()
    assert settings.ami_id is None
    assert settings.deletion_protection is True, "secure default: the DB is protected"
    assert settings.db_backup_retention_days >= 1, "a read replica needs backups on its source"


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"webNodeCount": "5"}, "web_node_count", 5),
        ({"webNodeCount": 20}, "web_node_count", 20),
        ({"web-infra:webNodeCount": "3"}, "web_node_count", 3),
        ({"natGateways": "perAz"}, "nat_gateways", "perAz"),
        ({"adminCidrs": '["203.0.113.0/24"]'}, "admin_cidrs", ("203.0.113.0/24",)),
        ({"adminCidrs": ["198.51.100.7/32"]}, "admin_cidrs", ("198.51.100.7/32",)),
        ({"adminCidrs": ""}, "admin_cidrs", ()),
        ({"deletionProtection": "false"}, "deletion_protection", False),
        ({"deletionProtection": True}, "deletion_protection", True),
        ({"dbMultiAz": "true"}, "db_multi_az", True),
        ({"amiId": "ami-0123456789abcdef0"}, "ami_id", "ami-0123456789abcdef0"),
        ({"vpcCidr": "172.16.0.0/20"}, "vpc_cidr", "172.16.0.0/20"),
        ({"instanceType": "m7g.large"}, "instance_type", "m7g.large"),
        ({"dbInstanceClass": "db.r6g.large"}, "db_instance_class", "db.r6g.large"),
        ({"aws:region": "eu-west-1"}, "web_node_count", 2),
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
        ("dbMode", "aurora", "one of 'rds'"),
        ("natGateways", "none", "one of 'single', 'perAz'"),
        ("vpcCidr", "10.0.0.0/33", "a private IPv4 CIDR"),
        ("vpcCidr", "10.0.0.1/16", "a private IPv4 CIDR"),
        ("vpcCidr", "8.8.0.0/16", "a private IPv4 CIDR"),
        ("vpcCidr", "10.0.0.0/8", "from /16 to /24"),
        ("adminCidrs", '["0.0.0.0/0"]', "0.0.0.0/0 is refused"),
        ("adminCidrs", '["203.0.113.1/24"]', "host bits zero"),
        ("adminCidrs", '"203.0.113.0/24"', "a list of IPv4 CIDRs"),
        ("adminCidrs", "[not json", "a list of IPv4 CIDRs"),
        ("amiId", "ubuntu-24.04", "an AMI id"),
        ("deletionProtection", "yes", "true or false"),
        ("instanceType", "T3 small", "an EC2 instance type"),
        ("dbInstanceClass", "t4g.micro", "an RDS instance class"),
        ("dbBackupRetentionDays", "0", "from 1 to 35"),
        ("dbAllocatedStorageGb", "10", "from 20 to 16384"),
    ],
)
def test_rejects_bad_values_naming_key_value_and_fix(key: str, value: object, allowed: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({key: value}, stack="dev")
    message = str(error.value)
    assert f"web-infra:{key} = {value!r}" in message
    assert allowed in message
    assert "pulumi config set" in message


def test_misspelt_key_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(SettingsError, match=r"webNodeCont .*did you mean web-infra:webNodeCount"):
        load_settings({"web-infra:webNodeCont": "3"}, stack="dev")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"webNodeCount": "0", "dbMode": "x", "vpcCidr": "nope"}, stack="dev")
    assert str(error.value).count("\n  - ") == 3


def test_names_are_derived_safely_from_odd_stack_names() -> None:
    settings = load_settings({}, stack="Team_A.Prod")
    assert settings.name_prefix == "web-infra-team-a-prod"
    assert settings.internal_zone == "team-a-prod.web-infra.internal"
    assert settings.db_primary_identifier == "web-infra-team-a-prod-primary"
    long = load_settings({}, stack="x" * 80)
    assert len(long.db_replica_identifier) <= 63


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
    assert set(KNOWN_KEYS) >= {"webNodeCount", "adminCidrs", "amiId", "deletionProtection"}
