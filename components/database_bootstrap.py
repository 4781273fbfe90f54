"""The app's own database user: its secret, and the one-shot function that creates it.

The app never logs in as the RDS master user. The program generates the app's password
(pulumi-random: letters, digits and `-_.~`, nothing MySQL or a shell would quote) and keeps it
with the user name in a secret of the stack, under a fixed name the web nodes' config names,
so their userdata is known at preview. That secret does not wait for RDS: the web tier's policy
names it, and the nodes boot while RDS is still being created.

A Lambda function in the VPC's private subnets (components/functions/app_db_user.py, with
PyMySQL bundled from the locked environment) is the only thing that can read the master secret.
`pulumi up` invokes it once the primary is available, and again whenever what it does changes:
the app's password (a new secret version), the function's code, the primary or the secrets.
It creates the app's tables and user (DML on those tables only, TLS required) and sets the
password; every statement is idempotent. Until it has run, the app answers database requests
with 503 and picks the user up on its own.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.functions import app_db_user
from components.instance_role import service_trust
from settings.names import IAM_NAME_MAX, fit_name

HANDLER_SOURCE = Path(app_db_user.__file__)
HANDLER = f"{HANDLER_SOURCE.stem}.handler"
RUNTIME = aws.lambda_.Runtime.PYTHON3D13
DRIVER = "PyMySQL"  # pure Python: the same files run on any architecture and runtime
PASSWORD_LENGTH = 40
SPECIAL_CHARACTERS = "-_.~"
LAMBDA_NAME_MAX = 64
ENI_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
LAMBDA_TRUST = service_trust("lambda.amazonaws.com")


def app_secret_name(name_prefix: str) -> str:
    """The app's secret: a fixed name per stack, so the nodes' userdata is known at preview."""
    return f"{name_prefix}/database/app-user"


def function_code() -> pulumi.AssetArchive:
    """The handler at the archive's root and PyMySQL beside it, as installed by `uv sync` from
    uv.lock (the version pinned in pyproject.toml), without bytecode caches (they differ from
    machine to machine and would change the code's hash)."""
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {
        HANDLER_SOURCE.name: pulumi.FileAsset(str(HANDLER_SOURCE))
    }
    for file in importlib.metadata.files(DRIVER) or []:
        keep = file.parts[0] == "pymysql" and file.suffix == ".py"
        keep = keep or (file.parts[0].endswith(".dist-info") and "LICENSE" in file.name.upper())
        if keep:
            assets[file.as_posix()] = pulumi.FileAsset(str(file.locate()))
    if not any(name.startswith("pymysql/") for name in assets):
        raise RuntimeError(f"{DRIVER} is not installed: run `uv sync` (make setup)")
    return pulumi.AssetArchive(dict(sorted(assets.items())))


@dataclass(frozen=True)
class DatabaseBootstrapArgs:
    name_prefix: str
    """The stack's prefix for physical names (the role's, the function's, its log group's)."""
    secret_name: str
    """The app's secret's name (`app_secret_name`)."""
    app_username: str
    database_name: str
    primary_address: pulumi.Input[str]
    """The primary's DNS name (as its certificate names it); the function waits for it."""
    port: int
    master_secret_arn: pulumi.Input[str]
    """The RDS-managed master secret: only this component's role may read it."""
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets with a route to Secrets Manager and the RDS CA bundle (the NAT)."""
    security_group_id: pulumi.Input[str]
    """The function's own group, which the database's group admits on `port`."""
    ca_bundle_url: str
    """Where the RDS CA bundle is downloaded, as the web nodes download it."""
    log_retention_days: int
    run_after: Sequence[pulumi.Resource]
    """What the function needs to reach the primary: the firewall's rules and NAT routes."""


class DatabaseBootstrap(pulumi.ComponentResource):
    app_secret_arn: pulumi.Output[str]
    """The app's secret, which the web nodes' role may read (created without waiting for RDS)."""
    result: pulumi.Output[str]
    """What the last run did (JSON: the user, its grants), no password."""

    def __init__(
        self, name: str, args: DatabaseBootstrapArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:database_bootstrap:DatabaseBootstrap", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role_name = fit_name(f"{args.name_prefix}-db-bootstrap", IAM_NAME_MAX)
        function_name = fit_name(f"{args.name_prefix}-db-bootstrap", LAMBDA_NAME_MAX)
        password = random.RandomPassword(
            f"{name}-app-password",
            length=PASSWORD_LENGTH,
            special=True,
            override_special=SPECIAL_CHARACTERS,
            opts=child,
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-app-secret",
            name=args.secret_name,
            description="The web app's MySQL user and password (made by the database bootstrap)",
            # Deleted at once on destroy: the name is fixed, and a secret pending deletion
            # would block the next stack of that name for up to 30 days. The password is the
            # program's; the next bootstrap sets a new one.
            recovery_window_in_days=0,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        version = aws.secretsmanager.SecretVersion(
            f"{name}-app-secret-value",
            secret_id=secret.id,
            secret_string=pulumi.Output.json_dumps(
                {"username": args.app_username, "password": password.result}
            ),
            opts=child,
        )

        # Lambda's own log group name for the function, made here to set its retention.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            name=role_name,
            assume_role_policy=LAMBDA_TRUST,
            description="The database bootstrap: the only reader of the RDS master secret",
            opts=child,
        )
        # Lambda creates the function's network interfaces in the VPC with the role's rights.
        network_interfaces = aws.iam.RolePolicyAttachment(
            f"{name}-network-interfaces", role=role.name, policy_arn=ENI_POLICY, opts=child
        )
        permissions = aws.iam.RolePolicy(
            f"{name}-permissions",
            name="permissions",
            role=role.id,
            policy=pulumi.Output.all(args.master_secret_arn, secret.arn, log_group.arn).apply(
                lambda arns: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "ReadTheMasterAndTheAppSecrets",
                                "Effect": "Allow",
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": [arns[0], arns[1]],
                            },
                            {
                                "Sid": "WriteItsLog",
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": f"{arns[2]}:*",
                            },
                        ],
                    }
                )
            ),
            opts=child,
        )
        function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            description="Creates the web app's MySQL user and tables (idempotent)",
            role=role.arn,
            runtime=RUNTIME,
            handler=HANDLER,
            code=function_code(),
            architectures=["arm64"],
            memory_size=128,
            timeout=60,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={"RDS_CA_URL": args.ca_bundle_url}
            ),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=list(args.subnet_ids), security_group_ids=[args.security_group_id]
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            # CreateFunction checks that the role may create the network interfaces.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[network_interfaces]),
        )
        invocation = aws.lambda_.Invocation(
            f"{name}-run",
            function_name=function.name,
            input=pulumi.Output.json_dumps(
                {
                    "host": args.primary_address,
                    "port": args.port,
                    "database": args.database_name,
                    "master_secret_arn": args.master_secret_arn,
                    "app_secret_arn": secret.arn,
                }
            ),
            # A new password or new code runs the function again (an input change does too).
            triggers={
                "app_secret_version": version.version_id,
                "code": function.code_sha256,
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[permissions, version, *args.run_after]
            ),
        )

        self.app_secret_arn = secret.arn
        self.result = invocation.result
        self.register_outputs({"app_secret_arn": self.app_secret_arn, "result": self.result})
