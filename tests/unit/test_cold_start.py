"""What the handler module does for a cold start: the garbage collector paused during its imports, then the
imported objects frozen out of its scans, and the collector running again afterwards, as the process had it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HANDLER = Path(__file__).resolve().parents[2] / "handler"
PROBE = """
import gc, json, sys
{before}
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
import auto_collector.handler
gc.callbacks.clear()
print(json.dumps({{"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "collections": len(collections)}}))
"""


def _import_handler(before: str) -> dict[str, int]:
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "eu-west-1"}
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=HANDLER,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, int] = json.loads(run.stdout)
    return result


def test_importing_the_handler_freezes_what_it_imported_and_collects_again_afterwards() -> None:
    state = _import_handler("")
    assert state["enabled"] is True
    assert state["frozen"] > 10_000, "modules, classes and functions of the imports are frozen"
    # The same imports with the pause made a no-op: the collector runs all along (about 150 times).
    unpaused = _import_handler("gc.disable = lambda: None")
    assert unpaused["frozen"] > 10_000
    assert state["collections"] * 10 < unpaused["collections"], (state, unpaused)


@pytest.mark.parametrize("before", ["gc.disable()"])
def test_a_process_that_had_the_collector_off_keeps_it_off(before: str) -> None:
    assert _import_handler(before)["enabled"] is False
