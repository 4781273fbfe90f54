"""Physical names: the prefix every AWS name of a stack starts with, fitted to AWS's limits.

Changes when a naming limit or the way a name is shortened changes. Names must be valid for
AWS and distinct for every stack name Pulumi accepts, so two stacks of one account never
collide; the components fit their own names with `fit_name`.
"""

from __future__ import annotations

import hashlib
import re

# What `pulumi stack init` accepts. The lab also takes stack names from file names, which may
# hold anything; those are refused here rather than mangled into a name nobody chose.
_PULUMI_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
LABEL_MAX = 40
"""The longest stack (or project) part of a physical name: the private zone's first label
stays within DNS's 63 characters, and the prefix below within its limit."""
NAME_PREFIX_MAX = 50
"""RDS identifiers allow 63 characters: the prefix, then `-primary` or `-replica`."""
NAME_HASH_LENGTH = 6
IAM_NAME_MAX = 64
"""IAM role, instance profile and policy names: at most 64 characters."""


def _slug(text: str) -> str:
    """Lowercase letters, digits and single inner hyphens: what RDS identifiers, S3 buckets and
    DNS labels all accept."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug) or "stack"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:NAME_HASH_LENGTH]


def fit_name(name: str, limit: int) -> str:
    """`name` if it fits in `limit` characters; otherwise its start and a short hash of the
    whole, so that two long names sharing a start stay two names."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - NAME_HASH_LENGTH - 1].rstrip('-')}-{_digest(name)}"


def name_label(text: str) -> str:
    """A stack or project name as it appears in physical names: unchanged when it is already
    lowercase letters, digits and single inner hyphens of at most LABEL_MAX characters.
    Otherwise slugged, cut and followed by a hash of the original: `a_b`, `a.b`, `A-B` and
    `A_B` would all slug to `a-b`, and two stacks of one account must not share names."""
    slug = _slug(text)
    if slug == text and len(slug) <= LABEL_MAX:
        return slug
    return f"{slug[: LABEL_MAX - NAME_HASH_LENGTH - 1].rstrip('-')}-{_digest(text)}"


def name_prefix(project: str, stack: str) -> str:
    """The start of every physical name of a stack, `web-infra-dev`: see `name_label`."""
    return fit_name(f"{name_label(project)}-{name_label(stack)}", NAME_PREFIX_MAX)


def host_role_name(prefix: str, host: str) -> str:
    """The IAM role (and instance profile) of one host, `web-infra-dev-web-1`: a role per host,
    so each can write only its own readiness report (components/instance_role.py)."""
    return fit_name(f"{prefix}-{host}", IAM_NAME_MAX)


def stack_name_problems(stack: str) -> list[str]:
    if _PULUMI_STACK_NAME.fullmatch(stack):
        return []
    shown = stack if len(stack) <= 60 else f"{stack[:60]}..."
    return [
        f"stack name {shown!r} is not allowed; use 1 to 100 letters, digits, '-', '_' or '.' "
        "(what `pulumi stack init` accepts)"
    ]
