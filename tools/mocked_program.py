"""The whole Pulumi program run under mocks that look like AWS: for the tests and the diagram.

`run_program(config)` runs `__main__.py` exactly as `pulumi up` would, against mocks that
return realistic ids, ARNs, addresses and DNS names per resource type and answer the
program's lookups (region, availability zones, Canonical's AMI parameter). Every registration
is recorded, so tests can assert on any child resource. With `preview=True` the mocks behave
like a first `pulumi preview`: whatever AWS computes (ids, addresses, endpoints) is unknown.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import runpy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
ACCOUNT = "123456789012"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
UBUNTU_AMIS = {"amd64": "ami-0a1b2c3d4e5f60718", "arm64": "ami-0f1e2d3c4b5a69788"}


def _hex(seed: str, length: int = 17) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


@dataclass
class Registration:
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    provider: str | None
    urn: str = ""
    dependencies: set[str] = field(default_factory=set)
    """URNs this resource waits for: explicit `depends_on` and every input's source."""
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    """Input names whose change replaces the resource instead of updating it."""
    replacement_trigger: Any = None
    """The `replacement_trigger` option's value: a change of it replaces the resource."""
    explicit_dependencies: set[str] = field(default_factory=set)
    """URNs from the `depends_on` option alone (the engine sends them with the inputs' sources
    in `dependencies`; these are the ones no input carries)."""
    parent: str = ""
    """The parent's URN (the stack's for top-level resources)."""
    protect: bool = False
    """The `protect` option: Pulumi refuses to delete (or replace) the resource."""


@dataclass
class AwsMocks(pulumi.runtime.Mocks):
    preview: bool = False
    registrations: list[Registration] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    subnet_hosts: dict[str, Iterator[ipaddress.IPv4Address]] = field(default_factory=dict)
    ssm_parameters: dict[str, str] = field(default_factory=dict)
    """Parameters that exist in the account before the run (name -> value), e.g. gates'
    failure records; none by default, as on a new account."""

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:index/getRegion:getRegion":
            return {
                "id": REGION,
                "name": REGION,
                "region": REGION,
                "endpoint": f"ec2.{REGION}.amazonaws.com",
                "description": "Europe (Ireland)",
            }
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "id": REGION,
                "names": ZONES,
                "zoneIds": [f"euw1-az{i}" for i in range(1, len(ZONES) + 1)],
                "groupNames": [REGION] * len(ZONES),
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": ACCOUNT,
                "accountId": ACCOUNT,
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/session",
                "userId": "AROAEXAMPLE:session",
            }
        if args.token == "aws:ssm/getParameter:getParameter":
            arch = "arm64" if "/arm64/" in args.args["name"] else "amd64"
            return {
                "id": args.args["name"],
                "name": args.args["name"],
                "type": "String",
                "value": UBUNTU_AMIS[arch],
                "insecureValue": UBUNTU_AMIS[arch],
                "version": 42,
            }
        if args.token == "aws:ssm/getParametersByPath:getParametersByPath":
            folder = args.args["path"].rstrip("/") + "/"
            found = sorted(
                (name, value)
                for name, value in self.ssm_parameters.items()
                if name.startswith(folder) and "/" not in name[len(folder) :]
            )
            return {
                "id": args.args["path"],
                "path": args.args["path"],
                "names": [name for name, _ in found],
                "values": [value for _, value in found],
                "types": ["String"] * len(found),
                "arns": [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}" for name, _ in found],
                "withDecryption": True,
            }
        raise AssertionError(f"the program made an unexpected lookup: {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        if self.preview:
            # On a new stack's preview AWS has computed nothing: the empty id and the missing
            # outputs are unknown to the program.
            resource_id, outputs = "", inputs
        else:
            resource_id, computed = self._computed(args.typ, args.name, inputs)
            outputs = {**inputs, **computed}
        self.registrations.append(
            Registration(args.typ, args.name, resource_id, inputs, outputs, args.provider)
        )
        return resource_id, outputs

    def record_request(self, urn: str, request: Any) -> None:
        """What the engine would see beyond inputs: the dependency graph and resource options."""
        # Registrations arrive from several threads: find this one by its type and name.
        (registration,) = [
            r for r in self.registrations if (r.type, r.name) == (request.type, request.name)
        ]
        registration.urn = urn
        registration.dependencies = set(request.dependencies)
        from_inputs: set[str] = set()
        for urns in request.propertyDependencies.values():
            from_inputs |= set(urns.urns)
        registration.explicit_dependencies = registration.dependencies - from_inputs
        registration.dependencies |= from_inputs
        registration.ignore_changes = list(request.ignoreChanges)
        registration.delete_before_replace = bool(request.deleteBeforeReplace)
        registration.replace_on_changes = list(request.replaceOnChanges)
        registration.parent = request.parent
        registration.protect = bool(request.protect)
        if request.HasField("replacement_trigger"):
            registration.replacement_trigger = json_format.MessageToDict(
                request.replacement_trigger
            )

    def _computed(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        computed: dict[str, Any]
        seed = _hex(f"{typ}/{name}")
        arn = f"arn:aws:{typ.split(':')[1].split('/', maxsplit=1)[0]}:{REGION}:{ACCOUNT}:{name}"
        if typ == "aws:ec2/vpc:Vpc":
            return f"vpc-{seed}", {"arn": arn, "defaultSecurityGroupId": f"sg-{seed}"}
        if typ == "aws:ec2/subnet:Subnet":
            subnet_id = f"subnet-{seed}"
            # AWS reserves the first four addresses of every subnet.
            self.subnet_hosts[subnet_id] = iter(
                list(ipaddress.IPv4Network(inputs["cidrBlock"]).hosts())[10:]
            )
            return subnet_id, {"arn": arn}
        if typ == "aws:ec2/instance:Instance":
            # A fixed address (the load-balancer pair's) is the instance's; others come in turn.
            private_ip = inputs.get("privateIp") or str(next(self.subnet_hosts[inputs["subnetId"]]))
            computed = {
                "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-{seed}",
                "privateIp": private_ip,
                "privateDns": f"ip-{private_ip.replace('.', '-')}.{REGION}.compute.internal",
                "instanceState": "running",
            }
            if inputs.get("associatePublicIpAddress"):
                computed["publicIp"] = "203.0.113.50"
            return f"i-{seed}", computed
        if typ == "aws:ec2/eip:Eip":
            octet = int(seed[:2], 16) % 200 + 10
            return f"eipalloc-{seed}", {
                "allocationId": f"eipalloc-{seed}",
                "publicIp": f"198.51.100.{octet}",
                "publicDns": f"ec2-198-51-100-{octet}.{REGION}.compute.amazonaws.com",
            }
        if typ == "aws:ec2/securityGroup:SecurityGroup":
            return f"sg-{seed}", {"arn": arn, "name": name}
        if typ == "aws:rds/instance:Instance":
            identifier = inputs["identifier"]
            address = f"{identifier}.c9akciq32.{REGION}.rds.amazonaws.com"
            computed = {
                "arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}",
                "address": address,
                "endpoint": f"{address}:3306",
                "port": 3306,
                "resourceId": f"db-{seed.upper()}",
            }
            if inputs.get("manageMasterUserPassword"):
                computed["masterUserSecrets"] = [
                    {
                        "secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
                        f"rds!db-{seed}-AbCdEf",
                        "secretStatus": "active",
                        "kmsKeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{seed}",
                    }
                ]
            return identifier, computed
        if typ == "aws:route53/zone:Zone":
            return f"Z{seed.upper()}", {
                "zoneId": f"Z{seed.upper()}",
                "arn": arn,
                "primaryNameServer": "ns-1536.awsdns-00.co.uk.",
                "nameServers": [],
            }
        if typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            physical = inputs.get("name") or name
            return physical, {
                "arn": f"arn:aws:iam::{ACCOUNT}:{typ.rsplit(':', 1)[1].lower()}/{physical}",
                "name": physical,
            }
        if typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup"):
            return name, {"arn": arn, "name": name}
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs["bucket"]
            return bucket, {"arn": f"arn:aws:s3:::{bucket}", "bucketDomainName": f"{bucket}.s3"}
        if typ == "aws:ssm/parameter:Parameter":
            path = inputs["name"]
            return path, {"arn": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{path}", "version": 1}
        if typ == "aws:secretsmanager/secret:Secret":
            # AWS appends six random characters to a secret's name in its ARN.
            secret_arn = (
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{inputs['name']}-{seed[:6]}"
            )
            return secret_arn, {"arn": secret_arn}
        if typ == "aws:secretsmanager/secretVersion:SecretVersion":
            version = f"{seed[:8]}-{seed[8:12]}-{seed[12:16]}-{seed[:4]}-{seed[4:16]}"
            return f"{inputs['secretId']}|{version}", {"versionId": version}
        if typ == "random:index/randomPassword:RandomPassword":
            return "none", {"result": f"mock-password-{seed}"}
        if typ == "aws:lambda/function:Function":
            physical = inputs.get("name") or name
            return physical, {
                "arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
                "name": physical,
                "codeSha256": f"{seed}=",
            }
        if typ == "aws:lambda/invocation:Invocation":
            return f"{inputs['functionName']}_$LATEST_{seed[:8]}", {"result": '{"user": "mock"}'}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            group = inputs.get("name", name)
            return group, {
                "arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}",
                "name": group,
            }
        if typ == "random:index/randomId:RandomId":
            raw = bytes.fromhex(seed[: 2 * int(inputs["byteLength"])].ljust(8, "0"))
            return seed[:8], {"hex": raw.hex(), "dec": str(int.from_bytes(raw, "big"))}
        if typ == "aws:ebs/volume:Volume":
            return f"vol-{seed}", {"arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-{seed}"}
        if typ == "aws:ec2/volumeAttachment:VolumeAttachment":
            return f"vai-{seed[:10]}", {}
        if typ == "aws:ec2/subnetCidrReservation:SubnetCidrReservation":
            if inputs["reservationType"] == "explicit":
                # AWS no longer hands out the reserved addresses by itself.
                reserved = ipaddress.IPv4Network(inputs["cidrBlock"])
                free = self.subnet_hosts[inputs["subnetId"]]
                self.subnet_hosts[inputs["subnetId"]] = (a for a in free if a not in reserved)
            return f"scr-{seed}", {"ownerId": ACCOUNT}
        if typ.startswith("tls:index/"):
            return f"{name}-{seed[:8]}", tls_outputs(typ, seed, inputs)
        if typ.startswith("pulumi-python:dynamic"):
            # A gate's create waits for a host's report; AWS answered at once here.
            return f"{name}-{seed[:8]}", {"ready_at": "2026-01-01T00:00:00Z"}
        return f"{name}-{seed[:8]}", {"arn": arn}


def tls_outputs(typ: str, seed: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What pulumi-tls computes, for real: keys, requests and certificates a TLS client
    accepts (P-256 keys from the resource's seed, deterministic signatures, fixed dates)."""
    from cryptography import x509  # noqa: PLC0415 - only programs that use pulumi-tls
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    def load_key(pem: Any) -> ec.EllipticCurvePrivateKey:
        # A secret input arrives wrapped: {<the secret signature>: ..., "value": the PEM}.
        text = pem["value"] if isinstance(pem, dict) else pem
        key = serialization.load_pem_private_key(text.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def subject(args: dict[str, Any] | None) -> x509.Name:
        args = args or {}
        names = [x509.NameAttribute(NameOID.COMMON_NAME, args.get("commonName", "mock"))]
        if args.get("organization"):
            names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, args["organization"]))
        return x509.Name(names)

    def certificate(
        builder: x509.CertificateBuilder, issuer_key: ec.EllipticCurvePrivateKey, is_ca: bool
    ) -> str:
        hours = int(inputs["validityPeriodHours"])
        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        builder = (
            builder.serial_number(int(seed, 16))
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(hours=hours))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        uses = set(inputs.get("allowedUses", []))
        extended = [
            oid
            for use, oid in (
                ("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
                ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH),
            )
            if use in uses
        ]
        if extended:
            builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        signed = builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)
        return signed.public_bytes(serialization.Encoding.PEM).decode()

    if typ == "tls:index/privateKey:PrivateKey":
        key = ec.derive_private_key(int(seed, 16), ec.SECP256R1())
        public = key.public_key()
        return {
            "privateKeyPem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            "publicKeyPem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
        }
    if typ == "tls:index/selfSignedCert:SelfSignedCert":
        key = load_key(inputs["privateKeyPem"])
        name = subject(inputs.get("subject"))
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
        )
        return {"certPem": certificate(builder, key, bool(inputs.get("isCaCertificate")))}
    if typ == "tls:index/certRequest:CertRequest":
        key = load_key(inputs["privateKeyPem"])
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(subject(inputs.get("subject")))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(dns) for dns in inputs.get("dnsNames", [])]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
        )
        return {"certRequestPem": request.public_bytes(serialization.Encoding.PEM).decode()}
    if typ == "tls:index/locallySignedCert:LocallySignedCert":
        request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        builder = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(ca.subject)
            .public_key(request.public_key())
            .add_extension(
                request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                critical=False,
            )
        )
        return {"certPem": certificate(builder, load_key(inputs["caPrivateKeyPem"]), False)}
    raise AssertionError(f"no mock for {typ}")


class RecordingMonitor(MockMonitor):
    """The mocks' monitor, also keeping each registration's dependencies and options."""

    mocks: AwsMocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.mocks.record_request(response.urn, request)
        return response


@dataclass
class ProgramRun:
    mocks: AwsMocks
    outputs: dict[str, Any]

    @property
    def registrations(self) -> list[Registration]:
        return self.mocks.registrations

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name_contains: str = "") -> Registration:
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, f"expected one {typ} named *{name_contains}*, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        (found,) = [r for r in self.registrations if r.urn == urn]
        return found

    def depends_on(self, dependent: Registration, dependency: Registration) -> bool:
        """True when `dependent` waits for `dependency`, directly or through others."""
        seen: set[str] = set()
        pending = set(dependent.dependencies)
        while pending:
            urn = pending.pop()
            if urn == dependency.urn:
                return True
            if urn in seen:
                continue
            seen.add(urn)
            pending |= next((r.dependencies for r in self.registrations if r.urn == urn), set())
        return False

    def instances(self, role: str) -> list[Registration]:
        return [
            r for r in self.of_type("aws:ec2/instance:Instance") if r.inputs["tags"]["Role"] == role
        ]


def run_program(
    config: dict[str, Any] | None = None,
    *,
    preview: bool = False,
    stack: str = "dev",
    aws_config: dict[str, str] | None = None,
    ssm_parameters: dict[str, str] | None = None,
) -> ProgramRun:
    """Run `__main__.py` under the mocks with `web-infra:` config values (native types) and
    `aws:` ones (as the CLI passes them: strings, JSON for lists and maps); `ssm_parameters`
    already exist in the account."""
    mocks = AwsMocks(preview=preview, ssm_parameters=dict(ssm_parameters or {}))
    pulumi.runtime.set_mocks(
        mocks, project="web-infra", stack=stack, preview=preview, monitor=RecordingMonitor(mocks)
    )
    raw = {"aws:region": REGION, **(aws_config or {})}
    for key, value in (config or {}).items():
        raw[f"web-infra:{key}"] = value if isinstance(value, str) else json.dumps(value)
    pulumi.runtime.set_all_config(raw)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        namespace = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        exported = namespace["infrastructure"].outputs
        return pulumi.Output.all(**exported).apply(outputs.update)

    program()
    return ProgramRun(mocks, outputs)
