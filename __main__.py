"""web-infra: an HAProxy load balancer, an active-active web tier and MySQL primary + replica.

Thin on purpose: read and validate the stack's settings, build the architecture, export the
outputs other stacks rely on. Everything else lives in `components/` and `userdata/`.
"""

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from components.web_infrastructure import WebInfrastructure
from settings import SettingsError, load_settings


def stack_config() -> dict[str, object]:
    """Every config value of the stack, so that a misspelt key is an error, not a default."""
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


try:
    settings = load_settings(stack_config(), stack=pulumi.get_stack(), project=pulumi.get_project())
except SettingsError as error:
    # Stop before any resource is registered, with the message and without a traceback.
    raise pulumi.RunError(str(error)) from None

# Every AWS resource carries these tags, through the provider, not one by one.
provider = aws.Provider(
    "aws",
    # An explicit provider does not read aws:region from stack config by itself.
    region=aws.config.region,
    default_tags=aws.ProviderDefaultTagsArgs(
        tags={"Project": settings.project, "Stack": settings.stack, "ManagedBy": "pulumi"}
    ),
)
infrastructure = WebInfrastructure(
    settings.name_prefix, settings, opts=pulumi.ResourceOptions(providers={"aws": provider})
)
for key, value in infrastructure.outputs.items():
    pulumi.export(key, value)
