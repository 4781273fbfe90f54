"""Whether a role's identity policies allow one call: AWS's evaluation logic, small and strict.

Why not moto's `moto.iam.access_control.IAMPolicy`: its statement matching treats a statement
with `NotResource` as matching every resource, lets a conditioned Allow through when the
request lacks the condition's key, and turns the pattern into a regular expression without
escaping it (`.` matches any character, `?` is not a wildcard). Those make a check of least
privilege pass what AWS denies, so this follows the documented rules instead
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html),
for identity-based policies in one account, and refuses what it does not implement rather
than guess:

- a request is denied unless some statement allows it (implicit deny); an applicable Deny in
  any policy wins over every Allow (explicit deny);
- `Action`/`NotAction` match case-insensitively, `Resource`/`NotResource` case-sensitively,
  both with `*` (any run of characters) and `?` (one character) as wildcards;
- `Condition`: every operator and every key must hold, any of a key's values may match; a key
  missing from the request fails the condition, except for negated operators and `...IfExists`;
- policy variables (`${ec2:SourceInstanceARN}`) in `Resource` and condition values take the
  request's value; one the request lacks is an error here (AWS would match nothing).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Decision(Enum):
    ALLOWED = "allowed"
    EXPLICIT_DENY = "explicitly denied"
    IMPLICIT_DENY = "implicitly denied"


class UnsupportedPolicy(ValueError):
    """A policy element this evaluator does not implement."""


STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
NEGATED = ("StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike")


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str | list[str]] | None = None
    """Condition keys of the request (e.g. `cloudwatch:namespace`), lower- or mixed-case."""


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


VARIABLE = re.compile(r"\$\{([^}]+)\}")
LITERALS = {"*": "\x00", "?": "\x01", "$": "$"}
"""`${*}`, `${?}`, `${$}`: the characters themselves, not wildcards."""


def _substitute(pattern: str, context: Mapping[str, Any]) -> str:
    lowered = {key.lower(): value for key, value in context.items()}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in LITERALS:
            return LITERALS[name]
        found = lowered.get(name.lower())
        if not isinstance(found, str):
            raise UnsupportedPolicy(f"policy variable ${{{name}}} is not in the request")
        return found

    return VARIABLE.sub(value, pattern)


def _wildcard(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    # fnmatch's translate also treats [...] as a set; IAM has no sets, so escape brackets.
    escaped = pattern.replace("[", "[[]")
    flags = 0 if case_sensitive else re.IGNORECASE
    expression = fnmatch.translate(escaped).replace("\x00", r"\*").replace("\x01", r"\?")
    return re.fullmatch(expression, value, flags) is not None


def _string_match(operator: str, expected: str, actual: str) -> bool:
    base = operator.removesuffix("IfExists")
    if base in ("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals"):
        return expected == actual
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return expected.lower() == actual.lower()
    if base in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike"):
        return _wildcard(expected, actual, case_sensitive=True)
    if base == "Bool":
        return expected.lower() == actual.lower()
    raise UnsupportedPolicy(f"condition operator {operator} is not implemented here")


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    lowered = {key.lower(): _as_list(value) for key, value in context.items()}
    for operator, keys in condition.items():
        base = operator.removesuffix("IfExists")
        negated = base in NEGATED or base == "StringNotEqualsIgnoreCase"
        for key, expected in keys.items():
            actual = lowered.get(key.lower())
            if actual is None:
                if operator.endswith("IfExists") or negated:
                    continue
                return False
            matches = any(_string_match(operator, e, a) for e in _as_list(expected) for a in actual)
            if matches == negated:
                return False
    return True


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    unknown = set(statement) - STATEMENT_KEYS
    if unknown:
        raise UnsupportedPolicy(f"statement elements {sorted(unknown)} (identity policies only)")
    if ("Action" in statement) == ("NotAction" in statement):
        raise UnsupportedPolicy("a statement needs exactly one of Action and NotAction")
    if ("Resource" in statement) == ("NotResource" in statement):
        raise UnsupportedPolicy("a statement needs exactly one of Resource and NotResource")

    context = request.context or {}

    def matches(element: str, value: str, *, case_sensitive: bool) -> bool:
        return any(
            _wildcard(_substitute(p, context), value, case_sensitive=case_sensitive)
            for p in _as_list(statement[element])
        )

    if "Action" in statement:
        action_ok = matches("Action", request.action, case_sensitive=False)
    else:
        action_ok = not matches("NotAction", request.action, case_sensitive=False)
    if "Resource" in statement:
        resource_ok = matches("Resource", request.resource, case_sensitive=True)
    else:
        resource_ok = not matches("NotResource", request.resource, case_sensitive=True)
    return action_ok and resource_ok and _condition_holds(statement.get("Condition", {}), context)


def evaluate(policies: Iterable[str | Mapping[str, Any]], request: Request) -> Decision:
    """AWS's decision for `request` under a principal's identity policies (JSON or parsed)."""
    allowed = False
    for policy in policies:
        document = json.loads(policy) if isinstance(policy, str) else policy
        statements = document["Statement"]
        for statement in [statements] if isinstance(statements, dict) else statements:
            if not _statement_applies(statement, request):
                continue
            if statement["Effect"] == "Deny":
                return Decision.EXPLICIT_DENY
            if statement["Effect"] != "Allow":
                raise UnsupportedPolicy(f"Effect {statement['Effect']!r}")
            allowed = True
    return Decision.ALLOWED if allowed else Decision.IMPLICIT_DENY
