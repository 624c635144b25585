"""What a new Lambda container starts with, for tests that need one mid-test (the fixtures reset around each)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

from auto_collector import runtime


def cold_start() -> None:
    """Forget the warm runtime objects (clients, window cache, clock offset) and Powertools' secret cache."""
    runtime.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]  # unannotated in Powertools
