"""The example consumer stack (examples/consumer), under Pulumi mocks.

The mocks answer the StackReference as the Pulumi engine would: with the referenced stack's
outputs, shaped exactly like the ones web-infra exports. Each test sets up its own mocks and
config (the `mocks` fixture) and puts the runtime back afterwards, so these tests and the
root program's tests, which also use `set_mocks`, cannot see each other's resources.
"""

from __future__ import annotations

import copy
import gc
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings as runtime_settings

from tools.mocked_program import run_program

ROOT = Path(__file__).resolve().parent.parent
CONSUMER_DIR = ROOT / "examples" / "consumer"
# The example is the package `consumer` (examples/consumer/__init__.py), so neither its
# `__main__.py` nor its modules can be mistaken for the root program's.
sys.path.insert(0, str(CONSUMER_DIR.parent))

from consumer import consumer_stack  # noqa: E402
from consumer.consumer_stack import (  # noqa: E402
    CONSUMED_OUTPUTS,
    ConsumerConfigError,
    ConsumerSettings,
)

from components.stack_outputs import STACK_OUTPUTS  # noqa: E402

PROJECT = "web-infra-consumer"
WEB_INFRA_STACK = "acme/web-infra/dev"
LB_DNS = "ec2-198-51-100-23.eu-west-1.compute.amazonaws.com"
LB_IP = "198.51.100.23"
REPLICA_HOST = "web-infra-dev-db-replica.c9akciq32.eu-west-1.rds.amazonaws.com"
VPC_ID = "vpc-0a1b2c3d4e5f60718"
DATABASE_SG = "sg-0d4e5f6a7b8c9d0e1"

# contract: the stack outputs web-infra exports, with values shaped like its real ones.
# `test_mocked_outputs_are_shaped_like_the_programs` runs the program itself and fails when
# a key is renamed, dropped or changes shape, so this table cannot drift from it.
WEB_INFRA_OUTPUTS: dict[str, Any] = {
    "url": f"http://{LB_DNS}",
    "https_enabled": False,
    "https_url": f"https://{LB_DNS}",
    "load_balancer_public_ip": LB_IP,
    "load_balancer_public_dns": LB_DNS,
    "web_private_ips": ["10.0.128.10", "10.0.144.10"],
    "db_primary_endpoint": "web-infra-dev-db.c9akciq32.eu-west-1.rds.amazonaws.com:3306",
    "db_replica_endpoint": f"{REPLICA_HOST}:3306",
    "vpc_id": VPC_ID,
    "public_subnet_ids": ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712"],
    "private_subnet_ids": ["subnet-0a1b2c3d4e5f60721", "subnet-0a1b2c3d4e5f60722"],
    "security_group_ids": {
        "load_balancer": "sg-0a1b2c3d4e5f60718",
        "web": "sg-0b2c3d4e5f6071829",
        "database": DATABASE_SG,
    },
    "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:web-infra-dev-alarms",
    "health_check_alarm_topic_arn": (
        "arn:aws:sns:us-east-1:123456789012:web-infra-dev-health-check-alarms"
    ),
    "health_check_id": "abcdef12-3456-7890-abcd-ef1234567890",
    "dashboard_url": (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#dashboards/dashboard/web-infra-dev"
    ),
}

SETTINGS = ConsumerSettings(
    web_infra_stack=WEB_INFRA_STACK, zone_id="Z0123456789ABCDEFGHIJ", record_name="www.example.com"
)


class WebInfraMocks(pulumi.runtime.Mocks):
    """The engine's side: the StackReference gets web-infra's outputs, AWS echoes inputs."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[Any, Any]]:
        self.resources.append(args)
        if args.typ == "pulumi:pulumi:StackReference":
            name = args.inputs["name"]
            state = {"name": name, "outputs": self.outputs, "secretOutputNames": []}
            return args.resource_id or name, state
        state = dict(args.inputs)
        if args.typ == "aws:route53/record:Record":
            state["fqdn"] = args.inputs["name"]
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"the consumer made an unexpected lookup: {args.token}")

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [resource for resource in self.resources if resource.typ == typ]

    def one(self, typ: str) -> dict[str, Any]:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {len(found)}"
        return dict(found[0].inputs)


@pytest.fixture
def mocks() -> Iterator[WebInfraMocks]:
    """Fresh mocks, a fresh root stack and empty config for one test; restored afterwards.

    When a test's program fails on purpose, its other outputs fail too and nobody awaits
    them; asyncio would log each one ("Future exception was never retrieved") when it is
    collected, hundreds of lines at exit. As `pulumi` itself does when it runs a program,
    the asyncio logger is quiet meanwhile, and those futures are collected before it speaks
    again.
    """
    saved_config = dict(runtime_config.CONFIG.get())
    asyncio_logger = logging.getLogger("asyncio")
    saved_level = asyncio_logger.level
    asyncio_logger.setLevel(logging.CRITICAL)
    runtime_settings.reset_options()  # forget any earlier test's root stack resource
    mocks = WebInfraMocks(copy.deepcopy(WEB_INFRA_OUTPUTS))
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="test", preview=False)
    pulumi.runtime.set_all_config({})
    yield mocks
    pulumi.runtime.set_all_config(saved_config)
    # The runtime keeps the last program's outputs and RPCs until the next one starts.
    runtime_settings.SETTINGS.outputs.clear()
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.reset_options()
    gc.collect()
    asyncio_logger.setLevel(saved_level)


def build(settings: ConsumerSettings = SETTINGS) -> dict[str, Any]:
    """Run `build()` to completion under the current mocks; the resolved stack outputs."""
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        outputs = consumer_stack.stack_outputs(consumer_stack.build(settings))
        return pulumi.Output.all(**outputs).apply(resolved.update)

    program()
    return resolved


# --- the contract with web-infra ---------------------------------------------------------------


def test_consumer_reads_only_keys_web_infra_exports() -> None:
    # contract: the program's own list of exports.
    assert set(CONSUMED_OUTPUTS) <= set(STACK_OUTPUTS), (
        f"not exported by web-infra: {sorted(set(CONSUMED_OUTPUTS) - set(STACK_OUTPUTS))}"
    )
    assert len(set(CONSUMED_OUTPUTS)) == len(CONSUMED_OUTPUTS), "listed twice"


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [type(value[0]).__name__] if value else []
    return type(value).__name__


def test_mocked_outputs_are_shaped_like_the_programs() -> None:
    """Guards the StackReference answer above against drifting from what web-infra exports."""
    real = run_program().outputs
    assert set(real) == set(STACK_OUTPUTS) == set(WEB_INFRA_OUTPUTS)
    for key in STACK_OUTPUTS:
        assert _shape(WEB_INFRA_OUTPUTS[key]) == _shape(real[key]), key


@pytest.mark.parametrize("key", CONSUMED_OUTPUTS)
def test_every_consumed_output_is_really_read(mocks: WebInfraMocks, key: str) -> None:
    """CONSUMED_OUTPUTS lists nothing the stack doesn't need: without the key, it fails."""
    del mocks.outputs[key]
    record_type = "A" if key == "load_balancer_public_ip" else "CNAME"
    settings = ConsumerSettings(
        web_infra_stack=WEB_INFRA_STACK,
        zone_id=SETTINGS.zone_id,
        record_name=SETTINGS.record_name,
        record_type=record_type,
    )
    with pytest.raises(KeyError, match=key):
        build(settings)


def test_reading_an_unlisted_output_is_refused(mocks: WebInfraMocks) -> None:
    stack = pulumi.StackReference("web-infra", stack_name=WEB_INFRA_STACK)
    with pytest.raises(KeyError, match="CONSUMED_OUTPUTS"):
        consumer_stack._require_output(stack, "db_primary_endpoint", str)


def test_an_output_of_the_wrong_shape_fails_clearly(mocks: WebInfraMocks) -> None:
    mocks.outputs["security_group_ids"] = list(WEB_INFRA_OUTPUTS["security_group_ids"].values())
    with pytest.raises(TypeError, match="security_group_ids"):
        build()


# --- what it builds --------------------------------------------------------------------------


def test_stack_reference_names_the_configured_stack(mocks: WebInfraMocks) -> None:
    build()
    assert mocks.one("pulumi:pulumi:StackReference")["name"] == WEB_INFRA_STACK


def test_cname_record_points_at_the_load_balancer_dns(mocks: WebInfraMocks) -> None:
    outputs = build()
    record = mocks.one("aws:route53/record:Record")
    assert record["zoneId"] == SETTINGS.zone_id
    assert record["name"] == "www.example.com"
    assert record["type"] == "CNAME"
    assert record["records"] == [LB_DNS]
    assert record["ttl"] == 300
    assert outputs["site_fqdn"] == "www.example.com"


def test_a_record_points_at_the_load_balancer_ip(mocks: WebInfraMocks) -> None:
    build(
        ConsumerSettings(
            web_infra_stack=WEB_INFRA_STACK,
            zone_id=SETTINGS.zone_id,
            record_name="example.com",
            record_type="A",
            record_ttl=60,
        )
    )
    record = mocks.one("aws:route53/record:Record")
    assert (record["type"], record["records"], record["ttl"]) == ("A", [LB_IP], 60)


def test_reporting_group_may_only_reach_the_database_on_3306(mocks: WebInfraMocks) -> None:
    build()
    group = mocks.one("aws:ec2/securityGroup:SecurityGroup")
    assert group["vpcId"] == VPC_ID
    assert group.get("ingress", []) == []
    (egress,) = group["egress"]
    assert (egress["protocol"], egress["fromPort"], egress["toPort"]) == ("tcp", 3306, 3306)
    assert egress["securityGroups"] == [DATABASE_SG]
    assert not egress.get("cidrBlocks")
    assert not egress.get("ipv6CidrBlocks")


def test_the_replica_port_follows_the_endpoint(mocks: WebInfraMocks) -> None:
    mocks.outputs["db_replica_endpoint"] = f"{REPLICA_HOST}:3307"
    outputs = build()
    (egress,) = mocks.one("aws:ec2/securityGroup:SecurityGroup")["egress"]
    assert (egress["fromPort"], egress["toPort"], outputs["db_replica_port"]) == (3307, 3307, 3307)


def test_exports_the_replica_endpoint_for_the_reporting_team(mocks: WebInfraMocks) -> None:
    outputs = build()
    assert outputs["db_replica_endpoint"] == f"{REPLICA_HOST}:3306"
    assert outputs["db_replica_host"] == REPLICA_HOST
    assert outputs["db_replica_port"] == 3306
    assert outputs["reporting_security_group_id"] == "reporting-id"


def test_exports_where_the_site_answers_over_https(mocks: WebInfraMocks) -> None:
    outputs = build()
    assert outputs["site_https_url"] == f"https://{LB_DNS}"
    assert outputs["site_https_enabled"] is False, "no domain: a self-signed certificate"


def test_builds_nothing_else(mocks: WebInfraMocks) -> None:
    build()
    assert sorted(resource.typ for resource in mocks.resources) == [
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:route53/record:Record",
        "pulumi:pulumi:StackReference",
    ]


def test_importing_the_module_registers_nothing(mocks: WebInfraMocks) -> None:
    # A fresh copy under another name: reloading `consumer_stack` itself would replace the
    # classes the other tests hold (ConsumerConfigError, ConsumerSettings).
    spec = importlib.util.spec_from_file_location(
        "consumer_stack_import_check", CONSUMER_DIR / "consumer_stack.py"
    )
    assert spec is not None
    loader = spec.loader
    assert loader is not None

    module = importlib.util.module_from_spec(spec)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def import_it() -> None:
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        try:
            loader.exec_module(module)
        finally:
            del sys.modules[spec.name]

    import_it()
    assert mocks.resources == []


# --- config ----------------------------------------------------------------------------------


def set_config(values: dict[str, str]) -> None:
    pulumi.runtime.set_all_config({f"{PROJECT}:{key}": value for key, value in values.items()})


def test_the_example_config_is_valid(mocks: WebInfraMocks) -> None:
    example = yaml.safe_load((CONSUMER_DIR / "Pulumi.example.yaml").read_text())["config"]
    pulumi.runtime.set_all_config({key: str(value) for key, value in example.items()})
    settings = consumer_stack.load_settings()
    assert settings.web_infra_stack == example[f"{PROJECT}:webInfraStack"]
    assert settings.record_type == "CNAME"
    assert settings.record_ttl == 300


def test_missing_config_names_every_missing_key(mocks: WebInfraMocks) -> None:
    set_config({"zoneId": "Z0123456789ABCDEFGHIJ"})
    with pytest.raises(ConsumerConfigError) as error:
        consumer_stack.load_settings()
    assert f"{PROJECT}:webInfraStack" in str(error.value)
    assert f"{PROJECT}:recordName" in str(error.value)
    assert f"{PROJECT}:zoneId" not in str(error.value)


def test_defaults(mocks: WebInfraMocks) -> None:
    set_config(
        {"webInfraStack": WEB_INFRA_STACK, "zoneId": SETTINGS.zone_id, "recordName": "a.b.c"}
    )
    settings = consumer_stack.load_settings()
    assert (settings.record_type, settings.record_ttl) == ("CNAME", 300)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("webInfraStack", "dev", "organization/project/stack"),
        ("webInfraStack", "web-infra/dev", "organization/project/stack"),
        ("zoneId", "example.com", "hosted zone id"),
        ("recordName", "not a name", "not a DNS name"),
        ("recordType", "AAAA", "CNAME, A"),
        ("recordTtl", "5", "60 to 86400"),
        ("recordTtl", "soon", "recordTtl"),
    ],
)
def test_bad_config_is_refused_with_the_key_and_the_rule(
    mocks: WebInfraMocks, key: str, value: str, says: str
) -> None:
    good = {"webInfraStack": WEB_INFRA_STACK, "zoneId": SETTINGS.zone_id, "recordName": "a.b.c"}
    set_config({**good, key: value})
    with pytest.raises(ConsumerConfigError, match=key) as error:
        consumer_stack.load_settings()
    assert says in str(error.value)


def test_main_stops_on_bad_config_before_building(mocks: WebInfraMocks) -> None:
    set_config({"webInfraStack": "dev"})
    with pytest.raises(pulumi.RunError, match="missing config"):
        consumer_stack.main()
    assert mocks.resources == []


@pytest.mark.parametrize(
    ("endpoint", "parsed"),
    [("db.example.internal:3306", ("db.example.internal", 3306)), ("h:1", ("h", 1))],
)
def test_parse_endpoint(endpoint: str, parsed: tuple[str, int]) -> None:
    assert consumer_stack.parse_endpoint(endpoint) == parsed


@pytest.mark.parametrize("endpoint", ["db.example.internal", ":3306", "db:", "db:port", "db:0"])
def test_parse_endpoint_refuses_what_is_not_host_port(endpoint: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        consumer_stack.parse_endpoint(endpoint)


# --- the project files -----------------------------------------------------------------------


def test_project_file_reuses_the_root_environment() -> None:
    project = yaml.safe_load((CONSUMER_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["runtime"]["name"] == "python"
    # uv's toolchain with no virtualenv option finds the root uv.lock and its .venv.
    assert project["runtime"]["options"] == {"toolchain": "uv"}
    assert (ROOT / "uv.lock").is_file()
    assert (CONSUMER_DIR / "__main__.py").is_file()
