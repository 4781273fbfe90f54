"""Reading a `Pulumi.<stack>.yaml` file without the Pulumi CLI (the lab and the tools do).

Changes when the stack file's format or what is refused in it changes (unsafe YAML tags,
nesting too deep); what the keys in it may hold is the loader's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from settings.errors import SettingsError, escaped, shown
from settings.keys import Settings
from settings.loader import load_settings


def read_stack_config(path: Path) -> dict[Any, Any]:
    """The `config:` mapping of a `Pulumi.<stack>.yaml` file, or SettingsError saying what is
    wrong with the file: unreadable, not YAML, nested too deep, Python tags (`!!python/...`,
    which a safe loader refuses), or not a mapping where one belongs."""
    fix = f"fix {path.name} (see Pulumi.dev.yaml for its shape)"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot read the stack file {path}: {error}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise SettingsError(
            f"{path.name} is not a valid stack file{line}: {escaped(str(problem), 120)}; "
            f"{fix} (plain YAML only: no !!python or other tags)"
        ) from None
    except RecursionError:
        raise SettingsError(f"{path.name} nests too deep to be a stack file; {fix}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SettingsError(
            f"{path.name} holds {shown(document)} at the top, not a mapping with a `config:` "
            f"key; {fix}"
        )
    config = document.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise SettingsError(
            f"{path.name}: `config:` is {shown(config)}, not a mapping of keys to values; {fix}"
        )
    return config


def load_stack_file(path: Path, *, stack: str | None = None) -> Settings:
    """Settings from a `Pulumi.<stack>.yaml` file, without the Pulumi CLI (used by the lab).

    Every key of the file is checked, as `pulumi up` checks them: the `aws:*` ones and any in a
    misspelt namespace too."""
    config = read_stack_config(path)
    stack_name = stack or path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    return load_settings(config, stack=stack_name)
