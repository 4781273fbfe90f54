"""The deploy graph a first `pulumi up` follows, and the names it hands AWS.

Nothing here talks to AWS: the program runs under the recording mocks, which keep every
registration with its inputs, the URNs it waits for and its resource options. The engine
creates a resource only once everything in its dependencies exists, so these tests read the
order of a real first run off that graph:

- a host must not boot before every permission its boot uses is attached to its role (it
  would get AccessDenied, never install its app and never report ready);
- a resource that names another (by a fixed name or identifier instead of an output) must
  still wait for it, or AWS refuses it (`SourceNotFound`, `NoSuchEntity`, ...);
- a change that pulumi-aws applies to an instance by stopping and starting it must replace
  the instance instead, so that it takes the rolling path behind the readiness gates;
- every physical name fits AWS's rules for every stack name Pulumi accepts (up to 40
  characters here, with `_`, `.` and capitals).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pytest

from settings import SettingsError, load_settings
from tools.mocked_program import ProgramRun, Registration, run_program

INSTANCE = "aws:ec2/instance:Instance"
INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
ROLE_POLICY_TYPES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
)
RDS = "aws:rds/instance:Instance"

# Actions only the running app uses, each through a client that treats AccessDenied as
# "not yet" and asks again on the next request (userdata/web_app/credentials.py,
# SecretsManagerSecret).
# A policy that grants nothing else may appear after its host boots, so the web tier does not
# wait for the database (6-15 minutes) whose ARNs that policy names.
# The load-balancer pair's right to take the Elastic IP names the host's own instance, so it
# can only exist once the instance does; elastic_address.py asks again until it may, and a new
# host is its peer's backup meanwhile (components/load_balancer.py).
RUNTIME_ONLY_ACTIONS = frozenset(
    {"rds:DescribeDBInstances", "secretsmanager:GetSecretValue", "ec2:AssociateAddress"}
)

# What pulumi-aws (terraform-provider-aws, `resourceInstanceUpdate` in
# internal/service/ec2/ec2_instance.go) applies to a running instance by stopping it,
# modifying it and starting it again: the same instance id and address, so no readiness gate
# notices, and the next batch goes ahead as soon as EC2 says "running".
STOP_START_ARGUMENTS = (
    "instanceType",
    "userData",
    "userDataBase64",
    "capacityReservationSpecification",
)

# Inputs that give a resource its physical name or identifier, which others may quote.
NAME_INPUTS = ("name", "identifier", "bucket", "dashboardName")

# Where quoting another resource's name without waiting for it is harmless, and why.
TOLERATED_REFERENCES: dict[str, str] = {
    # An alarm on a metric nobody publishes yet is INSUFFICIENT_DATA (or treated as missing
    # data), not an error: CloudWatch accepts alarms on dimensions of resources that do not
    # exist, and the alarm starts evaluating once they publish.
    "aws:cloudwatch/metricAlarm:MetricAlarm": "dimensions",
    # A dashboard widget of a metric that has no data yet is drawn empty.
    "aws:cloudwatch/dashboard:Dashboard": "dashboardBody",
    # IAM does not check that a policy's resources exist; the policy applies once they do.
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    # Route 53 creates a health check for any name. Until the site's record exists the check
    # sees the site down, as it does until the load balancer serves anyway (its alarm may
    # notify once during a first run); nothing is refused.
    "aws:route53/healthCheck:HealthCheck": "fqdn",
    # Route 53 accepts a CNAME to any name (`db-primary` -> `database-1.<zone>` with
    # `dbMode: ec2`); it answers once the target's record exists, as a resolver would.
    "aws:route53/record:Record": "records",
    # The hosts' files name their log groups, which the hosts do not wait for (the groups
    # belong to the monitoring, built after the hosts). They depend on nothing, so the
    # engine creates them in the first seconds of a run, while a host first waits for its
    # NAT route (about 2 minutes); the metrics agent may not create a group itself (no
    # logs:CreateLogGroup), so it can never race Pulumi into an "already exists".
    "aws:s3/bucketObjectv2:BucketObjectv2": "content",
}

STACK_NAMES = (
    "production-eu-west-1",  # 20 characters: IAM's 64 broke on the auto-named roles
    "Prod_EU.west-1.blue_green.Canary-2026.ab",  # 40: Pulumi's longest here, odd characters
    "x" * 40,
)


# --- the graph -----------------------------------------------------------------------------


def role_policies(run: ProgramRun, instance: Registration) -> list[Registration]:
    """Every inline or attached policy of the instance's role (through its profile)."""
    (profile,) = [
        r
        for r in run.of_type(INSTANCE_PROFILE)
        if r.outputs["name"] == instance.inputs["iamInstanceProfile"]
    ]
    role = profile.inputs["role"]
    return [r for t in ROLE_POLICY_TYPES for r in run.of_type(t) if r.inputs["role"] == role]


def granted_actions(policy: Registration) -> set[str]:
    if "policyArn" in policy.inputs:
        return {f"managed policy {policy.inputs['policyArn']}"}
    actions: set[str] = set()
    for statement in json.loads(policy.inputs["policy"])["Statement"]:
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions


def boot_problems(run: ProgramRun) -> list[str]:
    problems = []
    for instance in run.of_type(INSTANCE):
        policies = role_policies(run, instance)
        if not policies:
            problems.append(f"{instance.name}: its role has no policy")
        for policy in policies:
            if run.depends_on(instance, policy):
                continue
            early = granted_actions(policy) - RUNTIME_ONLY_ACTIONS
            if early:
                problems.append(
                    f"{instance.name} can boot before {policy.name} exists, which grants "
                    f"{sorted(early)}"
                )
    return problems


def test_hosts_boot_only_once_their_boot_permissions_exist(default_run: ProgramRun) -> None:
    """The web role's S3 and readiness permissions sat in a policy built from the database's
    ARNs, and no instance waited for any policy: web-1 booted 6-15 minutes before it could
    fetch its app, got AccessDenied, never reported ready, and the gate timed out. Every
    policy of a host's role must exist before the host, except one granting only what the
    running app retries on its own (RUNTIME_ONLY_ACTIONS)."""
    problems = boot_problems(default_run)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("db_mode", ["ec2", "colocated"])
def test_database_hosts_boot_only_once_their_boot_permissions_exist(db_mode: str) -> None:
    """The same with MariaDB on EC2: a host that ran `database_node.py install` before its
    database policy existed could not read its key or the users' secrets, nor back up."""
    problems = boot_problems(run_program({"dbMode": db_mode}))
    assert not problems, "\n".join(problems)


def test_the_boot_check_sees_an_instance_that_does_not_wait() -> None:
    """The check above must be able to fail: web-1 without its dependencies on its role's
    policies is reported, for each of them that its boot uses."""
    run = run_program()
    (web_1,) = [i for i in run.instances("web") if i.name.endswith("web-1")]
    web_1.dependencies = {u for u in web_1.dependencies if "iam/rolePolicy" not in u}
    reported = [p for p in boot_problems(run) if p.startswith(web_1.name)]
    assert len(reported) == 3, reported  # session manager, boot, metrics agent
    assert not any("database-secret" in p for p in reported)


def test_no_host_waits_for_the_database(default_run: ProgramRun) -> None:
    """The database takes 15-35 minutes; hosts that waited for it would add that to every
    first run's critical path, for a secret the app reads once it runs."""
    for instance in default_run.of_type(INSTANCE):
        for database in default_run.of_type(RDS):
            assert not default_run.depends_on(instance, database), (
                f"{instance.name} waits for {database.name}"
            )


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in an input, with its path; JSON documents are read as what they hold."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        if value[:1] in "{[":
            try:
                yield from _strings(json.loads(value), path)
                return
            except ValueError:
                pass
        yield path, value


def _physical_names(registration: Registration) -> set[str]:
    names = {
        registration.inputs[k] for k in NAME_INPUTS if isinstance(registration.inputs.get(k), str)
    }
    if isinstance(registration.outputs.get("arn"), str):
        names.add(registration.outputs["arn"])
    return names


def _tolerated(registration: Registration, path: str) -> bool:
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    tolerated = TOLERATED_REFERENCES.get(registration.type)
    if tolerated == "dimensions":
        return top in ("dimensions", "metricQueries")
    return tolerated == top


def missing_dependencies(run: ProgramRun) -> list[str]:
    owners: dict[str, Registration] = {}
    for registration in run.registrations:
        if registration.type.startswith("aws:"):
            for name in _physical_names(registration):
                owners.setdefault(name, registration)
    problems = []
    for registration in run.registrations:
        # Only what the engine hands AWS (and the gates, which read AWS) can be refused by it;
        # a component or a random suffix's keepers only carry values along.
        if not registration.type.startswith(("aws:", "pulumi-python:dynamic")):
            continue
        for path, value in _strings(registration.inputs):
            if path.startswith(("tags.", "description")):
                continue  # labels for people: AWS never resolves them
            owner = owners.get(value)
            if owner is None or owner is registration or _tolerated(registration, path):
                continue
            if path in NAME_INPUTS and value in _physical_names(registration):
                continue  # its own name
            if not run.depends_on(registration, owner):
                problems.append(
                    f"{registration.name}.{path} names {owner.name} ({value!r}) but does not "
                    "wait for it"
                )
    return problems


@pytest.mark.parametrize(
    "config",
    [
        {},
        # With a domain and a public zone: the site record and an HTTPS health check.
        {
            "domain": "shop.example.com",
            "acmeEmail": "ops@example.com",
            "publicZoneId": "Z0123456789ABCDEFGHIJ",
            "alarmEmail": "ops@example.com",
        },
        {"dbMode": "ec2"},
        {"dbMode": "colocated", "webNodeCount": 3},
    ],
    ids=["defaults", "domain", "ec2", "colocated"],
)
def test_what_names_another_resource_waits_for_it(config: dict[str, Any]) -> None:
    """The RDS event subscription took the databases' identifiers as plain strings, so it was
    created while they did not exist yet, and RDS refused it (SourceNotFound). Whatever
    quotes another resource's physical name must depend on it, except where AWS tolerates a
    reference to something that does not exist yet (see TOLERATED_REFERENCES)."""
    problems = missing_dependencies(run_program(config))
    assert not problems, "\n".join(problems)


def test_the_dependency_check_sees_a_plain_string_reference() -> None:
    """The check above must be able to fail: a copy of the event subscription without its
    dependencies is reported."""
    run = run_program()
    subscription = run.one("aws:rds/eventSubscription:EventSubscription")
    subscription.dependencies = {
        urn for urn in subscription.dependencies if "rds/instance" not in urn
    }
    assert any("sourceIds" in p for p in missing_dependencies(run))


def test_stop_start_changes_replace_hosts_behind_their_gates(default_run: ProgramRun) -> None:
    """pulumi-aws changes an instance's type (and the other STOP_START_ARGUMENTS) by stopping
    and starting it in place: same id, same address, so the gates do not wait again, both web
    nodes can be down at once and the single load balancer stops for minutes. Each of them
    must replace the instance instead (a new instance, gated, before the old one goes)."""
    for instance in default_run.of_type(INSTANCE):
        replaced = set(instance.replace_on_changes)
        if instance.inputs.get("userDataReplaceOnChange"):
            replaced |= {"userData", "userDataBase64"}
        in_place = [a for a in STOP_START_ARGUMENTS if a not in replaced and "*" not in replaced]
        assert not in_place, f"{instance.name} is stopped and started in place on {in_place}"
        # ... and a replacement is gated: a readiness gate waits for this very instance.
        gates = [
            g
            for g in default_run.of_type("pulumi-python:dynamic/readiness:ReadinessGate")
            if g.inputs["instance_id"] == instance.id and default_run.depends_on(g, instance)
        ]
        assert len(gates) == 1, f"{instance.name} has {len(gates)} readiness gates"


# --- names ---------------------------------------------------------------------------------

AUTONAME_SUFFIX = "-a1b2c3d"
"""What Pulumi appends to a resource's name when it names the AWS resource itself."""

_IAM_NAME = re.compile(r"^[\w+=,.@-]+$")
_RDS_IDENTIFIER = re.compile(r"^[a-z](?!.*--)[a-z0-9-]*[a-z0-9]$")


def _s3_bucket(name: str) -> bool:
    return (
        3 <= len(name) <= 63
        and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name) is not None
        and ".." not in name
        and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)
        and not name.startswith(("xn--", "sthree-"))
        and not name.endswith(("-s3alias", "--ol-s3"))
    )


def _dns_name(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name) <= 255 and all(
        re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels
    )


def _ssm_parameter(name: str) -> bool:
    first = name.lstrip("/").split("/", 1)[0].lower()
    return (
        len(name) <= 1011
        and re.fullmatch(r"[a-zA-Z0-9_.\-/]+", name) is not None
        and name.count("/") <= 15
        and not first.startswith(("aws", "ssm"))
    )


NameRule = Callable[[str], bool]
# type -> (the input holding the name, whether Pulumi names it when the input is absent,
# AWS's rule for it)
NAME_RULES: dict[str, tuple[str, bool, NameRule]] = {
    "aws:iam/role:Role": ("name", True, lambda n: len(n) <= 64 and bool(_IAM_NAME.match(n))),
    INSTANCE_PROFILE: ("name", True, lambda n: len(n) <= 128 and bool(_IAM_NAME.match(n))),
    "aws:iam/rolePolicy:RolePolicy": (
        "name",
        True,
        lambda n: len(n) <= 128 and bool(_IAM_NAME.match(n)),
    ),
    "aws:iam/policy:Policy": ("name", True, lambda n: len(n) <= 128 and bool(_IAM_NAME.match(n))),
    RDS: ("identifier", True, lambda n: len(n) <= 63 and bool(_RDS_IDENTIFIER.match(n))),
    "aws:rds/subnetGroup:SubnetGroup": (
        "name",
        True,
        lambda n: len(n) <= 255 and bool(re.fullmatch(r"[a-z0-9 ._-]+", n)) and n != "default",
    ),
    "aws:rds/parameterGroup:ParameterGroup": (
        "name",
        True,
        lambda n: len(n) <= 255 and bool(_RDS_IDENTIFIER.match(n)),
    ),
    "aws:rds/eventSubscription:EventSubscription": (
        "name",
        True,
        lambda n: len(n) <= 255 and bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", n)),
    ),
    "aws:s3/bucket:Bucket": ("bucket", True, _s3_bucket),
    "aws:sns/topic:Topic": (
        "name",
        True,
        lambda n: len(n) <= 256 and bool(re.fullmatch(r"[A-Za-z0-9_-]+", n)),
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        "name",
        True,
        lambda n: len(n) <= 512 and bool(re.fullmatch(r"[.\-_/#A-Za-z0-9]+", n)),
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        "name",
        True,
        lambda n: 1 <= len(n) <= 255 and n.isprintable(),
    ),
    "aws:cloudwatch/dashboard:Dashboard": (
        "dashboardName",
        False,
        lambda n: len(n) <= 255 and bool(re.fullmatch(r"[A-Za-z0-9_-]+", n)),
    ),
    "aws:secretsmanager/secret:Secret": (
        "name",
        True,
        lambda n: len(n) <= 512 and bool(re.fullmatch(r"[A-Za-z0-9/_+=.@-]+", n)),
    ),
    "aws:ssm/parameter:Parameter": ("name", True, _ssm_parameter),
    "aws:route53/zone:Zone": ("name", False, _dns_name),
    "aws:route53/record:Record": ("name", False, _dns_name),
    "aws:ec2/securityGroup:SecurityGroup": (
        "name",
        True,
        lambda n: (
            len(n) <= 255
            and bool(re.fullmatch(r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+", n))
            and not n.startswith("sg-")
        ),
    ),
}


def name_problems(run: ProgramRun) -> list[str]:
    problems = []
    for registration in run.registrations:
        if registration.type in NAME_RULES:
            key, autonamed, rule = NAME_RULES[registration.type]
            name = registration.inputs.get(key)
            if name is None and autonamed:
                name = f"{registration.name}{AUTONAME_SUFFIX}"
            if isinstance(name, str) and not rule(name):
                problems.append(f"{registration.type} {name!r} ({len(name)} characters)")
        if registration.type == RDS:
            snapshot = registration.inputs.get("finalSnapshotIdentifier")
            if snapshot and not (len(snapshot) <= 255 and _RDS_IDENTIFIER.match(snapshot)):
                problems.append(f"final snapshot {snapshot!r}")
        for key, value in (registration.inputs.get("tags") or {}).items():
            if len(key) > 128 or len(str(value)) > 256:
                problems.append(f"{registration.name}: tag {key}={value!r} is too long")
    return problems


def test_the_name_rules_refuse_what_aws_refuses() -> None:
    """The rules must be able to fail, on names AWS refuses."""
    role, rds = NAME_RULES["aws:iam/role:Role"][2], NAME_RULES[RDS][2]
    assert not role("web-infra-production-eu-west-1-load-balancer-identity-role-a1b2c3d")
    assert not rds("web-infra-prod_eu-primary")
    assert not rds("web-infra--primary")
    assert not rds("web-infra-primary-")
    assert not _s3_bucket("web-infra-a_b-123456789012-eu-west-1-artifacts")
    assert not _dns_name(f"{'x' * 64}.web-infra.internal")


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_name_fits_aws_rules_for_any_stack_name(stack: str) -> None:
    """`web-infra-<stack>-load-balancer-identity-role` plus Pulumi's 8 random characters broke
    IAM's 64 for any stack name of 19+ characters; `_` and `.`, which Pulumi allows in stack
    names, are refused in RDS identifiers and S3 buckets."""
    run = run_program({"webNodeCount": 10, "dbInstanceClass": "db.t4g.medium"}, stack=stack)
    problems = name_problems(run)
    assert not problems, f"stack {stack!r}:\n" + "\n".join(problems)
    primary, replica = (run.one(RDS, "primary"), run.one(RDS, "replica"))
    assert primary.inputs["identifier"] != replica.inputs["identifier"]


def test_stacks_of_one_account_never_share_a_name() -> None:
    """`a_b`, `a.b`, `A-B` and `A_B` all became `web-infra-a-b`: two stacks in one account
    fought over the same roles, databases and bucket."""
    stacks = ("a-b", "a_b", "a.b", "A-B", "A_B")
    seen: dict[str, str] = {}
    for stack in stacks:
        run = run_program(stack=stack)
        for registration in run.registrations:
            key = NAME_RULES.get(registration.type, ("",))[0]
            name = registration.inputs.get(key) if key else None
            # Records are named within their zone, inline policies within their role.
            scoped = ("aws:route53/record:Record", "aws:iam/rolePolicy:RolePolicy")
            if not isinstance(name, str) or registration.type in scoped:
                continue
            other = seen.setdefault(f"{registration.type} {name}", stack)
            assert other == stack, f"stacks {other!r} and {stack!r} both name {name!r}"


def test_a_stack_name_pulumi_refuses_is_refused_before_anything_is_registered() -> None:
    """A stack name from elsewhere (the lab reads it from a file name) is checked like
    Pulumi checks it, before any resource exists."""
    with pytest.raises(pulumi.RunError, match=r"stack name 'prod eu'.*letters, digits"):
        run_program(stack="prod eu")
    assert pulumi.runtime.settings.SETTINGS.monitor.mocks.registrations == []
    with pytest.raises(SettingsError, match="stack name"):
        load_settings({}, stack="")
