"""The stack's `aws:*` settings that web-infra's own AWS provider honours.

Changes when the provider honours another `aws:*` key or AWS's tagging rules change; the
program's `web-infra:*` keys are elsewhere (`settings.keys`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from settings import parsers
from settings.errors import SettingsError, shown, shown_key


@dataclass(frozen=True)
class AwsProviderSettings:
    """The stack's `aws:*` settings that web-infra's explicit AWS provider honours.

    The program creates its own provider (to tag every resource), and an explicit provider
    does not read `aws:*` stack settings by itself: a silently ignored `aws:profile` or
    `aws:allowedAccountIds` could deploy to the wrong account. So each supported key is
    passed on, and any other `aws:*` key is an error instead of being ignored.
    """

    region: str | None = None
    profile: str | None = None
    allowed_account_ids: tuple[str, ...] = ()
    forbidden_account_ids: tuple[str, ...] = ()
    default_tags: dict[str, str] = field(default_factory=dict)
    max_retries: int | None = None


_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# What AWS accepts in a tag (the rules every tagging service shares): letters, digits, spaces
# and _ . : / = + - @; keys up to 128 characters, values up to 256, at most 50 tags, and no key
# starting with `aws:`, which AWS reserves.
MAX_TAGS = 50
PROGRAM_TAGS = ("Project", "Stack", "ManagedBy")  # set on every resource by __main__.py
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256
_TAG_TEXT = re.compile(r"[\w .:/=+\-@]*")


def _json_value(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return parsers.json_text(raw)
        except ValueError:  # not JSON, or nested too deep: the parser says what is allowed
            return raw
    return raw


def _account_ids(raw: Any) -> tuple[str, ...]:
    value = _json_value(raw)
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _ACCOUNT_ID.fullmatch(v) for v in value
    ):
        raise ValueError('a list of 12-digit account ids, e.g. ["123456789012"]')
    return tuple(value)


def _default_tags(raw: Any) -> dict[str, str]:
    allowed = (
        '{"tags": {"Key": "value", ...}}: at most 50 tags (the program adds 3 of its own), '
        "keys of 1 to 128 and values of up to 256 letters, digits, spaces and _ . : / = + - @, "
        "no key starting with aws:"
    )
    value = _json_value(raw)
    tags = value.get("tags") if isinstance(value, dict) and set(value) == {"tags"} else None
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ValueError(allowed)
    if len(set(tags) | set(PROGRAM_TAGS)) > MAX_TAGS:
        raise ValueError(f"{allowed}; it has {len(tags)}")
    for key, text in tags.items():
        if key.lower().startswith("aws:"):
            raise ValueError(f"{allowed}; {shown(key)} starts with aws:")
        if not 1 <= len(key) <= MAX_TAG_KEY or not _TAG_TEXT.fullmatch(key):
            raise ValueError(f"{allowed}; the key {shown(key)} breaks these rules")
        if len(text) > MAX_TAG_VALUE or not _TAG_TEXT.fullmatch(text):
            raise ValueError(f"{allowed}; the value of {shown(key)}, {shown(text)}, breaks them")
    return dict(tags)


_AWS_PARSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "region": ("region", parsers.matching(_AWS_REGION, "an AWS region such as eu-west-1")),
    "profile": (
        "profile",
        parsers.matching(
            re.compile(r"[A-Za-z0-9_.@+-]{1,128}"),
            "a profile name from ~/.aws/config (letters, digits and _ . @ + -)",
        ),
    ),
    "allowedAccountIds": ("allowed_account_ids", _account_ids),
    "forbiddenAccountIds": ("forbidden_account_ids", _account_ids),
    "defaultTags": ("default_tags", _default_tags),
    "maxRetries": ("max_retries", parsers.integer(0, 100)),
}

AWS_KEYS = tuple(f"aws:{name}" for name in _AWS_PARSERS)


def parse_aws_provider(raw: Mapping[str, Any]) -> tuple[AwsProviderSettings, list[str]]:
    fields: dict[str, Any] = {}
    problems = []
    for key, value in sorted((k, v) for k, v in raw.items() if isinstance(k, str)):
        if not key.startswith("aws:"):
            continue
        name = key.removeprefix("aws:")
        if name not in _AWS_PARSERS:
            problems.append(
                f"{shown_key(key)} is not honoured by web-infra's AWS provider (it honours "
                + ", ".join(f"aws:{k}" for k in _AWS_PARSERS)
                + f"); remove it with `pulumi config rm {shown_key(key)}` and set credentials, "
                "roles and endpoints outside the stack (AWS_PROFILE with a role_arn profile, or "
                "the deploy job's credentials)"
            )
            continue
        field_name, parse = _AWS_PARSERS[name]
        try:
            fields[field_name] = parse(value)
        except ValueError as allowed:
            problems.append(f"{key} = {shown(value)} is not allowed; use {allowed}")
    return AwsProviderSettings(**fields), problems


def load_aws_provider_settings(raw: Mapping[str, Any]) -> AwsProviderSettings:
    """The stack's `aws:*` keys, validated (`load_settings` reports their problems too)."""
    aws, problems = parse_aws_provider(raw)
    if problems:
        raise SettingsError(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return aws
