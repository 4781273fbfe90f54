"""The loader: raw stack config in, a validated `Settings` or one `SettingsError` out.

Changes when the way a stack's config is checked as a whole changes: unknown or misspelt keys
and namespaces, and the rules between keys (a web tier too big for the database's connection
limit, a domain without an ACME e-mail). Each value on its own is checked by its parser.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from settings import database_hosts as database_shape
from settings.aws_provider import parse_aws_provider
from settings.colocated_database import COLOCATED_MIN_WEB_NODES
from settings.errors import SettingsError, shown, shown_key
from settings.keys import (
    EC2_DATABASE_KEYS,
    KEYS,
    KNOWN_KEYS,
    NAMESPACE,
    RDS_ONLY_KEYS,
    REMOVED_KEYS,
    Settings,
)
from settings.names import stack_name_problems
from settings.web_tier import (
    CONNECTIONS_PER_NODE,
    DATABASE_CONNECTION_HEADROOM,
    database_connections_needed,
)
from userdata.metric_catalog import estimated_max_connections, rds_class_memory_gib

MARIADB_MAX_CONNECTIONS = database_shape.MAX_CONNECTIONS
"""The database hosts' limit (`dbMode: ec2` and `colocated`): the max_connections they set."""
MARIADB_MODES = ("ec2", "colocated")
"""The modes that run MariaDB on EC2 instances of the stack's own."""


def load_settings(raw: Mapping[str, Any], *, project: str = NAMESPACE, stack: str) -> Settings:
    """Validate raw config (keys with or without the `web-infra:` prefix) into `Settings`.

    Values may be native (from YAML) or strings (from `pulumi.Config`). All problems are
    reported together so a user fixes their stack file in one pass.
    """
    problems = _namespace_problems(raw)
    values = {
        key.removeprefix(f"{NAMESPACE}:"): value
        for key, value in raw.items()
        if isinstance(key, str) and (key.startswith(f"{NAMESPACE}:") or ":" not in key)
    }
    for removed in sorted(set(values) & set(REMOVED_KEYS)):
        problems.append(f"{NAMESPACE}:{removed} is no longer a setting: {REMOVED_KEYS[removed]}")
    for unknown in sorted(set(values) - set(KNOWN_KEYS) - set(REMOVED_KEYS)):
        hint = difflib.get_close_matches(unknown, KNOWN_KEYS, n=1)
        fix = (
            f"did you mean {NAMESPACE}:{hint[0]}?"
            if hint
            else "known keys: " + ", ".join(KNOWN_KEYS)
        )
        problems.append(
            f"{shown_key(f'{NAMESPACE}:{unknown}')} is not a setting of this program; {fix}"
        )

    fields: dict[str, Any] = {}
    for key in KEYS:
        if key.name not in values or values[key.name] is None:
            fields[key.field] = key.default
            continue
        try:
            fields[key.field] = key.parse(values[key.name])
        except ValueError as allowed:
            problems.append(
                f"{NAMESPACE}:{key.name} = {shown(values[key.name])} is not allowed; use {allowed}"
            )
    given = {name for name, value in values.items() if value is not None}
    problems += _database_mode_problems(fields.get("db_mode"), given)
    problems += _colocated_node_problems(fields.get("db_mode"), values.get("webNodeCount"))
    problems += _cross_key_problems(fields)
    problems += parse_aws_provider(raw)[1]
    problems += stack_name_problems(stack)
    if problems:
        raise SettingsError(
            "invalid stack configuration:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nfix it with `pulumi config set {NAMESPACE}:<key> <value>` "
            "or in Pulumi.<stack>.yaml"
        )
    return Settings(project=project, stack=stack, **fields)


# Namespaces a stack's config may hold besides the program's own: the AWS provider's, Pulumi's
# own and the random provider's. Any other is a typo (`web-infa:`) or belongs to no one.
OTHER_NAMESPACES = ("aws", "pulumi", "random")


def _namespace_problems(raw: Mapping[Any, Any]) -> list[str]:
    """Keys that no part of the program reads: not text, or in a misspelt or foreign namespace.
    Without this, `web-infa:instanceType` would pass silently and the default be used."""
    problems = []
    namespaces = (NAMESPACE, *OTHER_NAMESPACES)
    for key in raw:
        if not isinstance(key, str):
            problems.append(
                f"the key {shown(key)} is not a config key; keys are text such as "
                f"{NAMESPACE}:webNodeCount"
            )
            continue
        namespace, colon, name = key.partition(":")
        if not colon or namespace in namespaces:
            continue
        close = difflib.get_close_matches(namespace, namespaces, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean {close[0]}:{name}?"
            if close[0] == NAMESPACE:
                near = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
                hint = f"did you mean {NAMESPACE}:{near[0] if near else name}?"
        else:
            hint = "this program reads the namespaces " + ", ".join(f"{n}:" for n in namespaces)
        problems.append(f"{shown_key(key)} is in a namespace no part of this program reads; {hint}")
    return problems


def _database_mode_problems(mode: object, given: set[str]) -> list[str]:
    """Keys of the other database mode: nothing would read them, so they are refused rather
    than silently ignored (the user believes they took effect)."""
    if mode == "ec2":
        return [
            f"{NAMESPACE}:{key} configures RDS, and {NAMESPACE}:dbMode = 'ec2' runs the "
            f"database on EC2 hosts: remove it with `pulumi config rm {NAMESPACE}:{key}` (the "
            f"hosts' type is {NAMESPACE}:dbInstanceType), or set {NAMESPACE}:dbMode rds"
            for key in RDS_ONLY_KEYS
            if key in given
        ]
    if mode == "colocated":
        # Each refused key names the mode it belongs to.
        hosts = f"the database hosts of {NAMESPACE}:dbMode = 'ec2'"
        owners = dict.fromkeys(RDS_ONLY_KEYS, ("RDS", "rds"))
        owners |= dict.fromkeys(EC2_DATABASE_KEYS, (hosts, "ec2"))
        return [
            f"{NAMESPACE}:{key} configures {what}, and {NAMESPACE}:dbMode = 'colocated' runs "
            f"the database on web-1 and web-2: remove it with `pulumi config rm "
            f"{NAMESPACE}:{key}` (the web nodes' type is {NAMESPACE}:instanceType), or set "
            f"{NAMESPACE}:dbMode {its_mode}"
            for key, (what, its_mode) in owners.items()
            if key in given
        ]
    if mode == "rds":
        return [
            f"{NAMESPACE}:{key} configures the database hosts of {NAMESPACE}:dbMode = 'ec2', "
            f"and this stack runs RDS: remove it with `pulumi config rm {NAMESPACE}:{key}` "
            f"(RDS's class is {NAMESPACE}:dbInstanceClass), or set {NAMESPACE}:dbMode ec2"
            for key in EC2_DATABASE_KEYS
            if key in given
        ]
    return []


def _colocated_node_problems(mode: object, nodes: object) -> list[str]:
    """`colocated` puts the primary on web-1 and the replica on web-2: it needs both. (The
    node count's own rule says the same today; this says why, should that rule ever change.)"""
    try:
        count = int(str(nodes))
    except ValueError:
        return []
    if mode != "colocated" or nodes is None or count >= COLOCATED_MIN_WEB_NODES:
        return []
    return [
        f"{NAMESPACE}:dbMode = 'colocated' runs the primary on web-1 and the replica on web-2, "
        f"so it needs {NAMESPACE}:webNodeCount of at least {COLOCATED_MIN_WEB_NODES}: "
        f"`pulumi config set {NAMESPACE}:webNodeCount {COLOCATED_MIN_WEB_NODES}`, or set "
        f"{NAMESPACE}:dbMode ec2 (database hosts of their own)"
    ]


def _cross_key_problems(fields: dict[str, Any]) -> list[str]:
    """Rules between keys, checked only when each key on its own is valid."""
    problems = []
    rds = fields.get("db_mode") == "rds"
    nodes, db_class = fields.get("web_node_count"), fields.get("db_instance_class")
    # The connection budget is RDS's (its class sets max_connections); the database hosts
    # configure theirs.
    if rds and isinstance(nodes, int) and isinstance(db_class, str):
        try:
            limit = estimated_max_connections(rds_class_memory_gib(db_class))
        except ValueError as error:
            problems.append(f"{NAMESPACE}:dbInstanceClass = {shown(db_class)}: {error}")
        else:
            needed = database_connections_needed(nodes)
            if needed > limit:
                fits = max(1, (limit - DATABASE_CONNECTION_HEADROOM) // CONNECTIONS_PER_NODE)
                problems.append(
                    f"{NAMESPACE}:webNodeCount = {nodes} may open {needed} connections to each "
                    f"database, but {db_class} allows about {limit}: use a larger "
                    f"dbInstanceClass (e.g. db.t4g.medium allows about 311) or at most {fits} "
                    "web nodes"
                )
    mode = fields.get("db_mode")
    if mode in MARIADB_MODES and isinstance(nodes, int):
        needed = database_connections_needed(nodes)
        if needed > MARIADB_MAX_CONNECTIONS:
            fits = (MARIADB_MAX_CONNECTIONS - DATABASE_CONNECTION_HEADROOM) // CONNECTIONS_PER_NODE
            problems.append(
                f"{NAMESPACE}:webNodeCount = {nodes} may open {needed} connections to each "
                f"database, but MariaDB on the database hosts allows {MARIADB_MAX_CONNECTIONS} "
                f"(their max_connections): use at most {fits} web nodes with "
                f"{NAMESPACE}:dbMode = {mode!r}"
            )
    storage, ceiling = (
        fields.get("db_allocated_storage_gb"),
        fields.get("db_max_allocated_storage_gb"),
    )
    if rds and isinstance(storage, int) and isinstance(ceiling, int) and ceiling <= storage:
        problems.append(
            f"{NAMESPACE}:dbMaxAllocatedStorageGb = {ceiling} must be larger than "
            f"dbAllocatedStorageGb = {storage}, or storage could never grow; raise it"
        )
    domain = fields.get("domain")
    if domain and not fields.get("acme_email"):
        problems.append(
            f"{NAMESPACE}:domain = {domain!r} needs an ACME account e-mail (the CA writes to it "
            f"before a certificate expires); set {NAMESPACE}:acmeEmail"
        )
    for key, field_name in (("acmeEmail", "acme_email"), ("publicZoneId", "public_zone_id")):
        if fields.get(field_name) and not domain:
            problems.append(
                f"{NAMESPACE}:{key} has no effect without a domain; set {NAMESPACE}:domain "
                f"(the site's DNS name) or remove it with `pulumi config rm {NAMESPACE}:{key}`"
            )
    return problems
