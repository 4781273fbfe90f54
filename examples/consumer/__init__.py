"""The web-infra-consumer example program (see README.md).

This file makes the directory the package `consumer` for the type checker and the tests, so its
`__main__.py` is not taken for the repository root's `__main__.py`. Pulumi itself runs the
directory, not the package, and never imports this file.
"""
