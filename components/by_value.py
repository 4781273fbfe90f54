"""Dynamic providers that Pulumi stores by value, so the state outlives a refactor.

Pulumi keeps each dynamic resource's provider in the state, pickled with dill
(`pulumi.dynamic.dynamic.serialize_provider`), and unpickles it for every later diff, update,
refresh and delete. dill pickles a class or function *by reference* (module and name) whenever
that name can be imported, and by value only when it cannot (code in `__main__`, say). A
provider class from `components/...` is therefore stored as "components.readiness_gate.
ReadinessProvider": rename or move that module and every stack deployed before can no longer
`destroy` or `refresh` its gates.

`by_value(cls)` loads the class's module once more from its file under a name no import
resolves. dill finds no importable home for that copy, so it pickles the class and every
function and constant its code reaches by value, down to modules that stay where they are
(the standard library, boto3, botocore, pulumi). The provider code must therefore not use
anything from this project's other modules at run time (tests/test_provider_serialization.py
loads a stored provider with `components` hidden).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")

DETACHED_PREFIX = "web_infra_by_value_"


@functools.cache
def _detached(module_name: str) -> ModuleType:
    source = sys.modules[module_name].__file__
    name = DETACHED_PREFIX + module_name.replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {module_name} again from {source}")
    module = importlib.util.module_from_spec(spec)
    # Registered only while its code runs (dataclasses and typing look the module up by
    # name); removed afterwards, so that dill cannot find it by name when pickling.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def by_value(cls: type[T]) -> type[T]:
    """The same provider class, from a copy of its module that dill pickles by value."""
    copy: type[T] = getattr(_detached(cls.__module__), cls.__qualname__)
    return copy
