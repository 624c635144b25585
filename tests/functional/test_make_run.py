"""`make run`, the README's first command, exactly as written: it must show the collector's main job working."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("args", "statuses"),
    [
        (
            "--budget 500 --repeat 1",
            [("console-test.json", "collected"), ("dry-run.json", "dry_run"), ("scheduled.json", "collected")],
        ),
        ("events/dry-run.json", [("dry-run.json", "dry_run"), ("dry-run.json", "dry_run")]),
        ("--accounts 0", None),
    ],
)
def test_the_make_run_options_the_readme_shows(args: str, statuses: list[tuple[str, str]] | None) -> None:
    assert f'`make run ARGS="{args}"`' in (REPO / "README.md").read_text()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    completed = subprocess.run(
        ["make", "run", f"ARGS={args}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    if statuses is not None:
        assert re.findall(r"^(\S+\.json)\s+(\S+)", completed.stdout, flags=re.MULTILINE) == statuses
    assert ("scheduled ticks" in completed.stdout) == ("--accounts 0" not in args)
