"""Typed, validated settings for the web-infra stack.

Every `web-infra:*` config key is read and checked here, once, before any resource is registered.
The loader is pure (no Pulumi runtime, no AWS): it takes the raw key/value pairs of a stack's
config and returns a frozen `Settings` or raises `SettingsError` naming every bad key, the bad
value and what is allowed. `__main__.py` feeds it `pulumi.Config`; the local lab feeds it the
stack's `Pulumi.<stack>.yaml`, so both agree on what a stack looks like.

This package exports the loader's entry points, which most of the repository uses. Its parts
change for different reasons and are imported directly where only they are needed:

- `keys`: `Settings` and the table of `web-infra:*` keys (a setting is added or changed);
- `parsers`: what a single value may be (an allowed value changes);
- `loader`: the stack's config checked as a whole (unknown keys, rules between keys);
- `aws_provider`: the `aws:*` keys the program's AWS provider honours;
- `stack_file`: reading `Pulumi.<stack>.yaml` without the Pulumi CLI;
- `names`: physical names fitted to AWS's limits;
- `web_tier`: the tier's size limits, node names, rollout batches and connection budget;
- `instance_types`: which EC2 types exist and their CPU architecture;
- `errors`: `SettingsError` and how a bad value is quoted.
"""

from settings.aws_provider import AwsProviderSettings, load_aws_provider_settings
from settings.errors import SettingsError
from settings.keys import Settings
from settings.loader import load_settings
from settings.stack_file import load_stack_file, read_stack_config

__all__ = [
    "AwsProviderSettings",
    "Settings",
    "SettingsError",
    "load_aws_provider_settings",
    "load_settings",
    "load_stack_file",
    "read_stack_config",
]
