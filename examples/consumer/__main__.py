"""Pulumi runs this file: build the consumer stack from its config (thin on purpose).

Pulumi runs this directory as a program, with the directory first on sys.path, so the module
beside this file is importable by its own name, `consumer_stack`. The type checker and the
tests know that module as `consumer.consumer_stack` instead (see `__init__.py`), hence the
import by name. Importing it registers nothing; `main()` builds the stack.
"""

import importlib

importlib.import_module("consumer_stack").main()
