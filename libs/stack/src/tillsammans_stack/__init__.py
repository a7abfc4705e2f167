"""Tillsammans on one machine: the launcher (``Stack``) and the ``tillsammans`` command line."""

from tillsammans_stack.launcher import SERVICES, Stack, StackConfig, StackError

__all__ = ["SERVICES", "Stack", "StackConfig", "StackError"]
