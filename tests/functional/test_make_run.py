"""`make run`, the README's first command, exactly as written: it must show the collector's main job working."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_run_collects_refuses_and_paces_twelve_accounts_under_the_ip_weight() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    completed = subprocess.run(
        ["make", "run"], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    output = completed.stdout
    assert completed.returncode == 0, output + completed.stderr
    statuses = re.findall(r"^(\S+\.json)\s+(\S+)", output, flags=re.MULTILINE)
    assert statuses == [
        ("console-test.json", "collected"),
        ("dry-run.json", "dry_run"),
        ("scheduled.json", "collected"),
        ("console-test.json", "budget_exhausted"),
        ("dry-run.json", "dry_run"),
        ("scheduled.json", "duplicate"),
    ]
    ticks = re.findall(r"tick (\d): collected\s+(\d+) .*; deferred (\d+)", output)
    # Tick 1 also reads each key's restrictions once (weight 1 each): 7 collections fit into the minute, not 8.
    assert ticks == [("1", "7", "5"), ("2", "8", "4")]
    assert "0 request(s) refused with 429/418" in output
