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

It also works around a leak in the SDK's `serialize_provider` (pulumi 3.272): each call wraps
`pickle._Pickler._batch_setitems` in one more sorting wrapper and never restores it, so the
N-th dynamic resource of a process pickles every dict through N nested wrappers. With
providers pickled by value (dicts inside dicts) a few hundred resources exceed Python's
recursion limit (the mocked tests, which run the program many times in one process, did).
`by_value` is called right before each serialization and unwinds the wrappers first.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import sys
from types import ModuleType
from typing import Any, TypeVar

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


def unwrap_pickler() -> None:
    """Undo the sorting wrappers `serialize_provider` left around `_batch_setitems`."""
    pickler: Any = pickle._Pickler  # the pure-Python pickler, which dill and the SDK use
    function = pickler._batch_setitems
    while function.__module__ != "pickle":  # the SDK's wrapper calls the one it wrapped
        (wrapped,) = function.__closure__
        function = wrapped.cell_contents
    pickler._batch_setitems = function


def by_value(cls: type[T]) -> type[T]:
    """The same provider class, from a copy of its module that dill pickles by value.

    Call it where the provider is handed to `pulumi.dynamic.Resource`, which serializes it.
    """
    unwrap_pickler()
    copy: type[T] = getattr(_detached(cls.__module__), cls.__qualname__)
    return copy
