"""The soak test's marker (registered here so `--strict-markers` accepts it wherever the suite runs)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "soak: thousands of invocations across processes with random faults "
        "(runs when SOAK_INVOCATIONS is set; 150 invocations when CI is set)",
    )
