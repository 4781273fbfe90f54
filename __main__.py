"""web-infra: an HAProxy load balancer, an active-active web tier and MySQL primary + replica.

Thin on purpose: read and validate the stack's settings, build the architecture, export the
outputs other stacks rely on. Everything else lives in `components/` and `userdata/`.
"""

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from components.web_infrastructure import WebInfrastructure
from settings import SettingsError, load_aws_provider_settings, load_settings


def stack_config() -> dict[str, object]:
    """Every config value of the stack, so that a misspelt key is an error, not a default."""
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


try:
    config = stack_config()
    settings = load_settings(config, stack=pulumi.get_stack(), project=pulumi.get_project())
    aws_settings = load_aws_provider_settings(config)
except SettingsError as error:
    # Stop before any resource is registered, with the message and without a traceback.
    raise pulumi.RunError(str(error)) from None

# An explicit provider, so that every AWS resource carries these tags. It does not read the
# stack's aws:* settings by itself: each one the program honours is passed on here (the
# settings loader refuses any other, instead of ignoring it).
provider_tags = aws.ProviderDefaultTagsArgs(
    tags={
        **aws_settings.default_tags,
        "Project": settings.project,
        "Stack": settings.stack,
        "ManagedBy": "pulumi",
    }
)
provider = aws.Provider(
    "aws",
    region=aws_settings.region,
    profile=aws_settings.profile,
    allowed_account_ids=list(aws_settings.allowed_account_ids) or None,
    forbidden_account_ids=list(aws_settings.forbidden_account_ids) or None,
    max_retries=aws_settings.max_retries,
    default_tags=provider_tags,
)
# Route 53 publishes health-check metrics only in us-east-1: the outside-in alarm lives there.
us_east_1 = aws.Provider(
    "aws-us-east-1",
    region="us-east-1",
    profile=aws_settings.profile,
    allowed_account_ids=list(aws_settings.allowed_account_ids) or None,
    forbidden_account_ids=list(aws_settings.forbidden_account_ids) or None,
    max_retries=aws_settings.max_retries,
    default_tags=provider_tags,
)
infrastructure = WebInfrastructure(
    settings.name_prefix,
    settings,
    aws_settings,
    opts=pulumi.ResourceOptions(providers={"aws": provider}),
    us_east_1=us_east_1,
)
for key, value in infrastructure.outputs.items():
    pulumi.export(key, value)
