"""Least privilege of the hosts' IAM roles: the evaluator, the analysers, the forbidden calls.

Guards three things without booting anything:
- `lab.boot.policy` decides as AWS's documented evaluation logic does (explicit deny over
  allow over implicit deny, wildcards, NotAction/NotResource, conditions, policy variables),
  so the boot lab's check of every recorded call (`tests/test_boot_e2e.py`) can be trusted;
- every policy the program renders passes parliament (grammar, unknown actions, resources
  that do not fit the action) and cloudsplaining (privilege escalation, resource exposure,
  data exfiltration, infrastructure modification, unconstrained writes);
- the calls no host may ever make are denied to it by the same evaluation, against the
  policies the program renders for that host's role.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from iam_support import HostPolicies, host_policies, instance_context, rendered_policies

from lab.boot.calls import UnknownCall, classify
from lab.boot.policy import Decision, Request, UnsupportedPolicy, evaluate
from tools.mocked_program import ACCOUNT, REGION, ProgramRun, run_program

ARTIFACTS = f"web-infra-dev-{ACCOUNT}-{REGION}-artifacts"


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# --- the evaluator, against AWS's documented rules --------------------------------------------

GET = Request("s3:GetObject", "arn:aws:s3:::bucket/files/a")


@pytest.mark.parametrize(
    ("policies", "request_", "decision"),
    [
        pytest.param([], GET, Decision.IMPLICIT_DENY, id="no-policy-implicit-deny"),
        pytest.param(
            [policy(allow("s3:GetObject", "arn:aws:s3:::bucket/files/*"))],
            GET,
            Decision.ALLOWED,
            id="allow-with-resource-wildcard",
        ),
        pytest.param(
            [policy(allow("s3:GetObject", "arn:aws:s3:::bucket/other/*"))],
            GET,
            Decision.IMPLICIT_DENY,
            id="other-resource",
        ),
        pytest.param(
            [
                policy(allow("s3:*", "*")),
                policy({"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}),
            ],
            GET,
            Decision.EXPLICIT_DENY,
            id="deny-in-another-policy-wins",
        ),
        pytest.param(
            [policy(allow("S3:get*", "arn:aws:s3:::bucket/files/a"))],
            GET,
            Decision.ALLOWED,
            id="actions-case-insensitive",
        ),
        pytest.param(
            [policy(allow("s3:GetObject", "arn:aws:s3:::BUCKET/files/a"))],
            GET,
            Decision.IMPLICIT_DENY,
            id="resources-case-sensitive",
        ),
        pytest.param(
            [policy(allow("s3:GetObject", "arn:aws:s3:::bucket/files/?"))],
            GET,
            Decision.ALLOWED,
            id="question-mark-one-character",
        ),
        pytest.param(
            [policy(allow("s3:GetObject", "arn:aws:s3:::bucket/files.a"))],
            Request("s3:GetObject", "arn:aws:s3:::bucket/filesxa"),
            Decision.IMPLICIT_DENY,
            id="dot-is-no-wildcard",
        ),
        pytest.param(
            [policy({"Effect": "Allow", "NotAction": "s3:PutObject", "Resource": "*"})],
            GET,
            Decision.ALLOWED,
            id="not-action-allows-the-others",
        ),
        pytest.param(
            [policy({"Effect": "Allow", "NotAction": "s3:Get*", "Resource": "*"})],
            GET,
            Decision.IMPLICIT_DENY,
            id="not-action-excludes",
        ),
        pytest.param(
            [
                policy(
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "NotResource": "arn:aws:s3:::bucket/files/*",
                    }
                )
            ],
            GET,
            Decision.IMPLICIT_DENY,
            id="not-resource-excludes",
        ),
        pytest.param(
            [
                policy(
                    allow(
                        "cloudwatch:PutMetricData",
                        "*",
                        Condition={"StringEquals": {"cloudwatch:namespace": "WebInfra/dev"}},
                    )
                )
            ],
            Request("cloudwatch:PutMetricData", "*"),
            Decision.IMPLICIT_DENY,
            id="condition-key-missing-fails",
        ),
        pytest.param(
            [
                policy(
                    allow(
                        "cloudwatch:PutMetricData",
                        "*",
                        Condition={"StringEquals": {"cloudwatch:namespace": "WebInfra/dev"}},
                    )
                )
            ],
            Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "WebInfra/dev"}),
            Decision.ALLOWED,
            id="condition-holds",
        ),
        pytest.param(
            [
                policy(
                    allow(
                        "cloudwatch:PutMetricData",
                        "*",
                        Condition={"StringEquals": {"cloudwatch:namespace": "WebInfra/dev"}},
                    )
                )
            ],
            Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/EC2"}),
            Decision.IMPLICIT_DENY,
            id="condition-other-value",
        ),
        pytest.param(
            [
                policy(
                    allow(
                        "s3:GetObject",
                        "*",
                        Condition={"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}},
                    )
                )
            ],
            GET,
            Decision.ALLOWED,
            id="if-exists-with-key-missing",
        ),
        pytest.param(
            [
                policy(
                    allow(
                        "ssm:PutParameter",
                        "arn:aws:ssm:eu-west-1:1:parameter/ready/${ec2:SourceInstanceARN}",
                    )
                )
            ],
            Request(
                "ssm:PutParameter",
                "arn:aws:ssm:eu-west-1:1:parameter/ready/i-2",
                {"ec2:SourceInstanceARN": "i-1"},
            ),
            Decision.IMPLICIT_DENY,
            id="policy-variable-is-the-requests-value",
        ),
    ],
)
def test_the_evaluator_decides_as_aws_documents(
    policies: list[dict[str, Any]], request_: Request, decision: Decision
) -> None:
    assert evaluate(policies, request_) is decision


@pytest.mark.parametrize(
    "statement",
    [
        allow("s3:GetObject", "*", Principal={"AWS": "*"}),
        {"Effect": "Allow", "Action": "s3:GetObject"},
        allow("s3:GetObject", "*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2026"}}),
        allow("s3:GetObject", "arn:aws:s3:::${aws:username}/*"),
    ],
    ids=["principal", "no-resource", "unknown-operator", "unknown-variable"],
)
def test_the_evaluator_refuses_what_it_does_not_implement(statement: dict[str, Any]) -> None:
    """An element it would have to guess at is an error, never an allow or a deny."""
    request_ = Request("s3:GetObject", "arn:aws:s3:::bucket/a", {"aws:CurrentTime": "2027"})
    with pytest.raises(UnsupportedPolicy):
        evaluate([policy(statement)], request_)


# --- recorded requests to IAM actions and resources -------------------------------------------


def recorded(**fields: Any) -> dict[str, Any]:
    base = {
        "host": "web-1",
        "role": "web",
        "service": "s3",
        "region": REGION,
        "http_host": f"{ARTIFACTS}.s3.{REGION}.amazonaws.com",
        "method": "GET",
        "path": "/files/web_app.py",
        "query": "",
        "target": "",
        "body": "",
        "status": 200,
    }
    return base | fields


@pytest.mark.parametrize(
    ("entry", "action", "resource"),
    [
        (recorded(), "s3:GetObject", f"arn:aws:s3:::{ARTIFACTS}/files/web_app.py"),
        (recorded(method="HEAD"), "s3:GetObject", f"arn:aws:s3:::{ARTIFACTS}/files/web_app.py"),
        (
            recorded(http_host=f"s3.{REGION}.amazonaws.com", path=f"/{ARTIFACTS}/files/a%20b"),
            "s3:GetObject",
            f"arn:aws:s3:::{ARTIFACTS}/files/a b",
        ),
        (
            recorded(http_host=f"s3.{REGION}.amazonaws.com", path=f"/{ARTIFACTS}"),
            "s3:ListBucket",
            f"arn:aws:s3:::{ARTIFACTS}",
        ),
        (
            recorded(path="/", query="list-type=2&prefix=database%2Ffull%2F&encoding-type=url"),
            "s3:ListBucket",
            f"arn:aws:s3:::{ARTIFACTS}",
        ),
        (
            recorded(method="POST", path="/database/full/x.xbstream", query="uploads="),
            "s3:PutObject",
            f"arn:aws:s3:::{ARTIFACTS}/database/full/x.xbstream",
        ),
        (
            recorded(
                method="PUT", path="/database/full/x.xbstream", query="partNumber=1&uploadId=u"
            ),
            "s3:PutObject",
            f"arn:aws:s3:::{ARTIFACTS}/database/full/x.xbstream",
        ),
        (
            recorded(method="DELETE", path="/database/full/x.xbstream", query="uploadId=u"),
            "s3:AbortMultipartUpload",
            f"arn:aws:s3:::{ARTIFACTS}/database/full/x.xbstream",
        ),
        (
            recorded(
                service="ssm",
                method="POST",
                path="/",
                target="AmazonSSM.PutParameter",
                body=json.dumps({"Name": "/web-infra-dev/ready/web-1", "Value": "{}"}),
            ),
            "ssm:PutParameter",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/web-infra-dev/ready/web-1",
        ),
        (
            recorded(
                service="secretsmanager",
                method="POST",
                target="secretsmanager.GetSecretValue",
                body=json.dumps({"SecretId": "app-db"}),
            ),
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app-db",
        ),
        (
            recorded(
                service="rds",
                method="POST",
                body="Action=DescribeDBInstances&Version=2014-10-31"
                "&DBInstanceIdentifier=web-infra-dev-primary",
            ),
            "rds:DescribeDBInstances",
            f"arn:aws:rds:{REGION}:{ACCOUNT}:db:web-infra-dev-primary",
        ),
    ],
    ids=[
        "s3-get",
        "s3-head",
        "s3-path-style",
        "s3-list",
        "s3-list-v2-with-a-prefix",
        "s3-multipart-start",
        "s3-multipart-part",
        "s3-multipart-abort",
        "ssm",
        "secret-by-name",
        "rds",
    ],
)
def test_recorded_requests_become_the_action_and_resource_iam_authorises(
    entry: dict[str, Any], action: str, resource: str
) -> None:
    call = classify(entry, ACCOUNT)
    assert (call.action, call.resource) == (action, resource)
    assert (call.host, call.role) == ("web-1", "web")
    # A listing carries the prefix it asks for: IAM's `s3:prefix` condition key.
    if "prefix=" in entry.get("query", ""):
        assert call.context == {"s3:prefix": "database/full/"}


@pytest.mark.parametrize(
    "entry",
    [
        recorded(method="DELETE"),
        recorded(service="ssm", method="POST", target="AmazonSSM.SendCommand", body="{}"),
        recorded(service="ec2", method="POST", body="Action=RunInstances"),
        recorded(service=None),
    ],
    ids=["s3-delete", "ssm-unknown", "ec2", "unsigned"],
)
def test_a_request_not_known_is_an_error_not_a_guess(entry: dict[str, Any]) -> None:
    """A new kind of call a host makes must be taught here before the boot test passes."""
    with pytest.raises(UnknownCall):
        classify(entry, ACCOUNT)


# --- the analysers, on every policy the program renders ---------------------------------------


@pytest.fixture(scope="module")
def hosts(default_run: ProgramRun) -> dict[str, HostPolicies]:
    return host_policies(default_run)


def parliament_findings(document: dict[str, Any]) -> list[str]:
    with warnings.catch_warnings():  # parliament imports setuptools' deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # its regexes, compiled on import
        from parliament import analyze_policy_string  # noqa: PLC0415

    analysed = analyze_policy_string(json.dumps(document))
    return [f"{f.issue}: {f.detail}" for f in analysed.findings]


def cloudsplaining_findings(document: dict[str, Any]) -> dict[str, list[str]]:
    from cloudsplaining.scan.policy_document import PolicyDocument  # noqa: PLC0415

    scanned = PolicyDocument(document)
    found = {
        "privilege escalation": [str(e) for e in scanned.allows_privilege_escalation],
        "resource exposure": scanned.permissions_management_without_constraints,
        "data exfiltration": scanned.allows_data_exfiltration_actions,
        "infrastructure modification": scanned.infrastructure_modification,
        "credentials exposure": scanned.credentials_exposure,
        "unconstrained writes": scanned.write_actions_without_constraints,
        "unconstrained tagging": scanned.tagging_actions_without_constraints,
    }
    return {risk: actions for risk, actions in found.items() if actions}


def test_the_analysers_find_what_they_should() -> None:
    """The checks below can fail: a typo'd action, a wildcard resource, secrets on `*`."""
    bad = policy(
        allow("s3:GetObjekt", "*"),
        allow(["secretsmanager:GetSecretValue", "iam:PassRole"], "*"),
    )
    assert any("UNKNOWN_ACTION" in f for f in parliament_findings(bad))
    found = cloudsplaining_findings(bad)
    assert "secretsmanager:GetSecretValue" in found.get("data exfiltration", [])
    assert found.get("privilege escalation") or found.get("resource exposure")


def test_parliament_finds_nothing_in_any_policy_the_program_renders(
    default_run: ProgramRun,
) -> None:
    documents = rendered_policies(default_run)
    assert documents, "the program rendered no IAM policy"
    findings = {name: parliament_findings(doc) for name, doc in documents.items()}
    assert not {name: f for name, f in findings.items() if f}, findings


def test_cloudsplaining_finds_no_least_privilege_risk_in_any_policy_the_program_renders(
    default_run: ProgramRun,
) -> None:
    findings = {
        name: cloudsplaining_findings(doc) for name, doc in rendered_policies(default_run).items()
    }
    assert not {name: f for name, f in findings.items() if f}, findings


@pytest.mark.parametrize("db_mode", ["ec2", "colocated"])
def test_neither_analyser_finds_anything_with_mariadb_on_ec2(db_mode: str) -> None:
    """The database's hosts (or web-1 and web-2 running it) add policies of their own."""
    documents = rendered_policies(run_program({"dbMode": db_mode}))
    assert [name for name in documents if name.endswith("-identity-database")]
    findings = {
        name: [*parliament_findings(doc), *cloudsplaining_findings(doc)]
        for name, doc in documents.items()
    }
    assert not {name: f for name, f in findings.items() if f}, findings


@pytest.mark.parametrize(
    "host",
    [
        "load-balancer-1",
        "web-1",
    ],
)
def test_every_policy_a_hosts_role_holds_passes_both_analysers(
    hosts: dict[str, HostPolicies], host: str
) -> None:
    """The role's attached policies too (AWS managed ones, from moto's copy of them): what the
    host can do is their sum, whoever wrote them."""
    findings = {
        name: [*parliament_findings(doc), *cloudsplaining_findings(doc)]
        for name, doc in hosts[host].documents.items()
    }
    assert not {name: f for name, f in findings.items() if f}, findings


# --- calls no host may ever make ---------------------------------------------------------------

MASTER_SECRET = "master secret"
APP_SECRET = "app secret"


def master_secret_arn(run: ProgramRun) -> str:
    (primary,) = [
        r for r in run.of_type("aws:rds/instance:Instance") if r.outputs.get("masterUserSecrets")
    ]
    return str(primary.outputs["masterUserSecrets"][0]["secretArn"])


def app_secret_arn(run: ProgramRun) -> str:
    (secret,) = [
        r
        for r in run.of_type("aws:secretsmanager/secret:Secret")
        if r.inputs["name"].endswith("/database/app-user")
    ]
    return str(secret.outputs["arn"])


def secret_arn(run: ProgramRun, resource: str) -> str:
    """The ARN a stand-in names, or the resource itself."""
    if resource == MASTER_SECRET:
        return master_secret_arn(run)
    if resource == APP_SECRET:
        return app_secret_arn(run)
    return resource


def parameter(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name}"


NEVER = [
    pytest.param(
        "load-balancer-1",
        "secretsmanager:GetSecretValue",
        APP_SECRET,
        id="load-balancer-reads-the-apps-secret",
    ),
    pytest.param(
        "web-1",
        "secretsmanager:GetSecretValue",
        MASTER_SECRET,
        id="web-reads-the-master-secret",
    ),
    pytest.param(
        "web-1",
        "ssm:PutParameter",
        parameter("web-infra-dev/ready/web-2"),
        id="web-1-writes-web-2s-report",
    ),
    pytest.param(
        "web-2",
        "ssm:PutParameter",
        parameter("web-infra-dev/ready/web-1"),
        id="web-2-writes-web-1s-report",
    ),
    pytest.param(
        "web-1",
        "ssm:PutParameter",
        parameter("web-infra-dev/ready/load-balancer-1"),
        id="web-writes-the-load-balancers-report",
    ),
    pytest.param(
        "load-balancer-1",
        "ssm:PutParameter",
        parameter("web-infra-dev/ready/web-1"),
        id="load-balancer-writes-a-web-report",
    ),
    *(
        pytest.param(
            host,
            action,
            parameter(f"web-infra-prod/{name}"),
            id=f"{host}-{action.split(':')[1]}-another-stacks-parameter",
        )
        for host in ("load-balancer-1", "web-1")
        for action, name in (("ssm:GetParameter", "db/password"), ("ssm:GetParameters", "x"))
    ),
    pytest.param(
        "web-1",
        "ssm:PutParameter",
        parameter("web-infra-prod/ready/web-1"),
        id="web-writes-another-stacks-report",
    ),
    pytest.param(
        "load-balancer-1",
        "secretsmanager:GetSecretValue",
        MASTER_SECRET,
        id="load-balancer-reads-the-master-secret",
    ),
    pytest.param(
        "load-balancer-1",
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:web-infra-dev/app-db-AbCdEf",
        id="load-balancer-reads-any-secret",
    ),
    pytest.param(
        "web-1",
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:other-AbCdEf",
        id="web-reads-another-secret",
    ),
    pytest.param(
        "web-1",
        "s3:GetObject",
        f"arn:aws:s3:::web-infra-prod-{ACCOUNT}-{REGION}-artifacts/files/web_app.py",
        id="web-reads-another-stacks-artifacts",
    ),
    pytest.param(
        "web-1",
        "s3:PutObject",
        f"arn:aws:s3:::{ARTIFACTS}/files/web_app.py",
        id="web-replaces-an-artifact",
    ),
    pytest.param(
        "web-1",
        "rds:DescribeDBInstances",
        f"arn:aws:rds:{REGION}:{ACCOUNT}:db:web-infra-prod-primary",
        id="web-describes-another-database",
    ),
    pytest.param(
        "web-1",
        "iam:PassRole",
        f"arn:aws:iam::{ACCOUNT}:role/web-infra-dev-web-identity-role",
        id="web-passes-its-role",
    ),
    pytest.param(
        "load-balancer-1",
        "ec2:RunInstances",
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*",
        id="load-balancer-starts-instances",
    ),
]


@pytest.mark.parametrize(("host", "action", "resource"), NEVER)
def test_a_call_no_host_may_make_is_denied_by_its_roles_policies(
    default_run: ProgramRun, hosts: dict[str, HostPolicies], host: str, action: str, resource: str
) -> None:
    """Evaluated exactly as the boot lab's recorded calls are (`tests/test_boot_e2e.py`)."""
    resource = secret_arn(default_run, resource)
    policies = hosts[host]
    context = instance_context(REGION, ACCOUNT, policies.instance_id)
    decision = evaluate(policies.documents.values(), Request(action, resource, context))
    assert decision is not Decision.ALLOWED, (
        f"{host} ({policies.role_name}) may {action} {resource}"
    )


@pytest.mark.parametrize(
    ("host", "action", "resource"),
    [
        ("web-1", "s3:GetObject", f"arn:aws:s3:::{ARTIFACTS}/files/web_app.py"),
        ("load-balancer-1", "s3:GetObject", f"arn:aws:s3:::{ARTIFACTS}/files/haproxy.cfg"),
        ("web-1", "ssm:PutParameter", parameter("web-infra-dev/ready/web-1")),
        ("web-2", "ssm:PutParameter", parameter("web-infra-dev/ready/web-2")),
        ("load-balancer-1", "ssm:PutParameter", parameter("web-infra-dev/ready/load-balancer-1")),
        ("web-1", "secretsmanager:GetSecretValue", APP_SECRET),
        ("web-2", "secretsmanager:GetSecretValue", APP_SECRET),
    ],
)
def test_what_each_host_needs_at_boot_is_allowed(
    default_run: ProgramRun, hosts: dict[str, HostPolicies], host: str, action: str, resource: str
) -> None:
    """The other side of least privilege: the same evaluation lets each host boot (and the app
    read its own database secret)."""
    resource = secret_arn(default_run, resource)
    policies = hosts[host]
    context = instance_context(REGION, ACCOUNT, policies.instance_id)
    decision = evaluate(policies.documents.values(), Request(action, resource, context))
    assert decision is Decision.ALLOWED, f"{host} may not {action} {resource}: {decision.value}"


def test_each_load_balancer_may_take_the_elastic_ip_for_itself_only(
    default_run: ProgramRun, hosts: dict[str, HostPolicies]
) -> None:
    """keepalived's holder associates the pair's Elastic IP with its own instance; it may not
    move the address to any other instance, nor another address to itself."""
    allocation = default_run.one("aws:ec2/eip:Eip", "load-balancer-eip").outputs["allocationId"]
    address = f"arn:aws:ec2:{REGION}:{ACCOUNT}:elastic-ip/{allocation}"
    for host, peer in (("load-balancer-1", "load-balancer-2"), ("load-balancer-2", "web-1")):
        policies = hosts[host]
        context = instance_context(REGION, ACCOUNT, policies.instance_id)

        def decide(action: str, resource: str) -> Decision:
            return evaluate(policies.documents.values(), Request(action, resource, context))  # noqa: B023

        own = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{policies.instance_id}"
        other = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{hosts[peer].instance_id}"
        assert decide("ec2:AssociateAddress", address) is Decision.ALLOWED, host
        assert decide("ec2:AssociateAddress", own) is Decision.ALLOWED, host
        assert decide("ec2:AssociateAddress", other) is not Decision.ALLOWED, f"{host} -> {peer}"
        assert (
            decide("ec2:AssociateAddress", f"arn:aws:ec2:{REGION}:{ACCOUNT}:elastic-ip/eipalloc-1")
            is not Decision.ALLOWED
        ), host
        assert decide("ec2:DisassociateAddress", address) is not Decision.ALLOWED, host
        assert decide("ec2:DescribeAddresses", "*") is Decision.ALLOWED, host
    assert (
        evaluate(
            hosts["web-1"].documents.values(),
            Request(
                "ec2:AssociateAddress",
                address,
                instance_context(REGION, ACCOUNT, hosts["web-1"].instance_id),
            ),
        )
        is not Decision.ALLOWED
    ), "web nodes never touch the address"


def test_each_load_balancer_may_report_who_holds_the_elastic_ip_in_the_stacks_namespace_only(
    default_run: ProgramRun, hosts: dict[str, HostPolicies]
) -> None:
    """elastic_address.py's reports (ElasticIpHeld, ElasticIpTakeovers) need no policy of their
    own: the metrics agent's, on every load balancer's role, allows PutMetricData in the stack's
    namespace, and nowhere else."""
    for host in ("load-balancer-1", "load-balancer-2"):
        policies = hosts[host]
        context = instance_context(REGION, ACCOUNT, policies.instance_id)

        def put(namespace: str) -> Decision:
            keys = {**context, "cloudwatch:namespace": namespace}  # noqa: B023
            request = Request("cloudwatch:PutMetricData", "*", keys)
            return evaluate(policies.documents.values(), request)  # noqa: B023

        assert put("WebInfra/web-infra-dev") is Decision.ALLOWED, host
        assert put("WebInfra/web-infra-other") is not Decision.ALLOWED, host
        assert put("AWS/EC2") is not Decision.ALLOWED, host
