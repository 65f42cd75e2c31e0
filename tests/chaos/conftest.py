"""Chaos suites: fault injection against a private stack (see private_stack.py); only
test_bad_input.py uses the shared stack, since it injects no faults."""

from tests.chaos.private_stack import (  # noqa: F401  (fixtures)
    chaos_log_dir,
    private_pg,
    private_stack,
    stack_workers,
)
