"""`make sam-local`: every events/ file through `sam local invoke` in Docker, checked at the exchange and the table.

The slow test runs the make target as a person would (it installs docker.io and debootstrap when missing, and
starts dockerd when none runs), then reads what the exchange emulator received and the table's outcome records
from the summary the local services write on the way out. Where Docker cannot start it fails, saying so.
The fast tests hold the README's `sam local invoke` section to the commands the script runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from localdev import sam_local
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, TIME_PATH

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sam-local.sh"
SUMMARY = REPO / ".cache" / "sam-local" / "summary.json"
README_SECTION = "### Running it with `sam local invoke`"


@pytest.fixture(scope="module")
def sam_local_run() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    if os.environ.get("RUN_SAM_LOCAL") != "1":
        pytest.skip("set RUN_SAM_LOCAL=1 to run make sam-local (make pytest does)")
    SUMMARY.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # Its own process group: on a timeout, the script hears SIGTERM and stops what it started (dockerd too).
    with subprocess.Popen(
        ["make", "--no-print-directory", "sam-local"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=1400)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=120)
            pytest.fail(f"make sam-local took more than 1400 s:\n{stdout}\n{stderr}")
    run = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    output = f"--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    if "Docker cannot start" in run.stderr:
        pytest.fail(f"make sam-local needs Docker, and Docker cannot start on this machine:\n{output}")
    assert run.returncode == 0, output
    assert SUMMARY.is_file(), output
    summary: dict[str, Any] = json.loads(SUMMARY.read_text())
    return run, summary


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_every_event_through_sam_local_invoke(
    sam_local_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    run, summary = sam_local_run
    statuses = re.findall(r"^(events/\S+\.json)\s+(\S+)\s+Duration: [0-9.]+ ms$", run.stdout, re.MULTILINE)
    assert statuses == [
        ("events/console-test.json", "collected"),
        ("events/dry-run.json", "dry_run"),
        ("events/scheduled.json", "collected"),
        ("events/scheduled.json", "duplicate"),
    ], run.stdout

    # At the exchange: one signed collection for the console test and one for the scheduled event, both
    # accepted and executed; the dry run and the repeated delivery sent none; no rule was broken. Besides them,
    # only reads: the key's restrictions (once per container, and the dry run's own), the dry run's balances and
    # clock sync.
    collections = [r for r in summary["requests"] if r["path"] == AUTO_COLLECTION_PATH]
    assert [(r["status"], r["executed"]) for r in collections] == [(200, True), (200, True)]
    assert summary["violations"] == 0
    reads = {"/sapi/v1/account/apiRestrictions", "/api/v3/account", "/sapi/v1/portfolio/balance", TIME_PATH}
    assert {r["path"] for r in summary["requests"]} <= {AUTO_COLLECTION_PATH} | reads

    # In the table: one outcome record per invocation, in order, each with the requests it sent.
    outcomes = summary["outcomes"]
    assert [(o["trigger"], o["status"], len(o.get("attemptLog") or [])) for o in outcomes] == [
        ("console", "collected", 1),
        ("console", "dry_run", 0),
        ("schedule", "collected", 1),
        ("schedule", "duplicate", 0),
    ]
    assert all(str(o["windowLimit"]) == "500" for o in outcomes)


@pytest.mark.slow
def test_the_local_services_listened_on_the_docker0_bridge_only(
    sam_local_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    run, _ = sam_local_run
    match = re.search(r"^moto at (\S+):\d+, exchange emulator at (\S+):\d+;", run.stdout, re.MULTILINE)
    assert match, run.stdout
    for host in match.groups():
        address = ipaddress.ip_address(host)
        assert address.is_private and not address.is_loopback and not address.is_unspecified, host


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::"])
def test_the_local_services_refuse_to_listen_beyond_the_bridge(host: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as refused:
        sam_local.main(["--host", host, "--env-vars", str(tmp_path / "env.json")])
    assert refused.value.code == 2
    assert not (tmp_path / "env.json").exists()


def test_it_fails_saying_so_when_docker_cannot_start(tmp_path: Path) -> None:
    """A machine where dockerd exits at once (here: a dockerd that does, and a docker that reaches no daemon)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, body in {
        "docker": "echo 'Cannot connect to the Docker daemon' >&2; exit 1",
        "dockerd": "echo 'failed to start daemon: this machine cannot run containers' >&2; exit 1",
        "debootstrap": "exit 1",
    }.items():
        (fake_bin / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake_bin / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{fake_bin}:{env['PATH']}"
    run = subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode != 0, run.stdout + run.stderr
    assert "FAILED: Docker cannot start on this machine" in run.stderr, run.stdout + run.stderr
    if os.geteuid() == 0:
        assert "cannot run containers" in run.stderr  # dockerd's own words, from its log


def readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split(README_SECTION, 1)[1].split("\n##", 1)[0]  # up to the next heading
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert blocks, f"no bash block under {README_SECTION!r}"
    lines = [line.split("  # ", 1)[0].rstrip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_shows_the_commands_make_sam_local_runs() -> None:
    # The script may add only output capture after a command (a redirection, a `|| { ...; }` on failure).
    script = [line.strip() for line in SCRIPT.read_text().splitlines()]
    commands = readme_commands()
    assert any("sam local invoke" in line for line in commands)

    def runs(command: str) -> bool:
        return any(line == command or re.match(re.escape(command) + r" (>|\|\|)", line) for line in script)

    missing = [line for line in commands if line.strip() != "make sam-local" and not runs(line.strip())]
    assert not missing, f"README lines that scripts/sam-local.sh does not run as written: {missing}"
