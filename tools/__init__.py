"""Operator tools for web-infra that run outside the Pulumi program: `python -m tools.verify`."""
