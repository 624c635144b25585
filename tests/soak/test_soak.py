"""Soak: thousands of invocations from several processes (warm Lambda containers) against DynamoDB Local,
moto's Secrets Manager and the exchange emulator, while random faults are injected.

Time runs fast: every process, and the emulator, reads a clock that advances SOAK_TIME_SCALE times faster
than the real one (600: an hour in 6 s), so the rolling hour fills, frees and refills many times. The hosts'
clocks are skewed (some ahead, some behind, some stepping backwards now and then), as Lambda hosts' are.

Asserted: the emulator never counted more than the budget in any rolling hour of its own clock and recorded
no violation; every invocation left exactly one outcome record; every reservation was used by exactly one
attempt; a scheduled event or SQS message reserved in one invocation only; no log line holds key material.

    SOAK_INVOCATIONS=2000 .venv/bin/python -m pytest tests/soak -s
    SOAK_PROCESSES (4), SOAK_BUDGET (10), SOAK_TIME_SCALE (600), SOAK_SEED (random) tune it;
    with CI set and SOAK_INVOCATIONS unset, 150 invocations run.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import random
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from localdev.exchange_emulator import AUTO_COLLECTION_PATH, Fault
from tests.support.events import scheduled_event
from tests.support.workers import worker_environment

pytestmark = [pytest.mark.soak, pytest.mark.dynamodb_local]

CI_INVOCATIONS = 150
SERVER_TIME = "/api/v3/time"
#: How far apart (in ms of the fast clock) each process's host clock starts from the exchange's.
HOST_SKEWS_MS = (0, 4_000, -90_000, 20_000, -3_000, 45_000)
#: A scheduled event id is remembered this long (window.EVENT_MEMORY_MS); deliveries further apart may both run.
EVENT_MEMORY_MS = 3 * 3_600_000


def soak_invocations() -> int | None:
    raw = os.environ.get("SOAK_INVOCATIONS", "").strip()
    if raw:
        return int(raw)
    return CI_INVOCATIONS if os.environ.get("CI") else None


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, "").strip() or default)


# --- the worker: one warm container invoking the handler in a loop (runs in a spawned process) -----------


def event_for(rng: random.Random, iteration: int) -> dict[str, Any]:
    """Schedule ticks and SQS messages are numbered by iteration, so processes at the same iteration get the
    same event: the duplicate deliveries of EventBridge and SQS, racing each other."""
    roll = rng.random()
    if roll < 0.45:
        # Ids are UUIDs as AWS sends them; the ones numbered by iteration are shared by every process.
        return scheduled_event(str(uuid.UUID(int=iteration) if rng.random() < 0.5 else uuid.uuid4()))
    if roll < 0.75:
        return {}
    message_id = str(uuid.UUID(int=(1 << 64) + iteration) if rng.random() < 0.5 else uuid.uuid4())
    body = '{"account": "default"}'
    return {"Records": [{"eventSource": "aws:sqs", "messageId": message_id, "body": body}]}


def soak_worker(
    environment: dict[str, str],
    origin_ns: int,
    scale: int,
    skew_ms: int,
    count: int,
    seed: int,
    log_path: str,
    start: Any,
    results: Any,
) -> None:
    log = open(log_path, "w", buffering=1)  # noqa: SIM115 - stays open for the process's life
    sys.stdout = sys.stderr = log  # Powertools' logger and the metrics writer bind to these
    logging.basicConfig(stream=log, level=logging.INFO, force=True)
    os.environ.update(environment)
    real_time_ns = time.time_ns
    skew = [skew_ms * 1_000_000]

    def host_clock_ns() -> int:  # the fast clock, as this (skewed) host reads it
        return origin_ns + (real_time_ns() - origin_ns) * scale + skew[0]

    time.time_ns = host_clock_ns
    from auto_collector.errors import CollectorError
    from auto_collector.handler import lambda_handler
    from tests.support.cold_start import cold_start
    from tests.support.lambda_context import FakeLambdaContext

    rng = random.Random(seed)
    statuses: Counter[str] = Counter()
    unexpected: list[str] = []
    start.wait()
    for iteration in range(count):
        if rng.random() < 0.03:  # the host's clock is stepped (NTP), often backwards
            skew[0] += rng.randint(-5_000, 2_000) * 1_000_000
        if rng.random() < 0.02:  # a cold start: a new container with empty caches
            cold_start()
        try:
            statuses[lambda_handler(event_for(rng, iteration), FakeLambdaContext())["status"]] += 1
        except CollectorError as error:
            statuses[f"error:{error.kind}"] += 1
            print(f"invocation raised {error!r}: {error}", file=log)  # scanned for key material too
        except Exception as error:  # anything else escaped the collector: a bug, reported by the test
            unexpected.append(f"{type(error).__name__}: {error}")
            traceback.print_exc(file=log)
    log.flush()
    results.put((dict(statuses), unexpected))


# --- faults, injected from the main process while the workers run ------------------------------------------


def fault_menu(rng: random.Random) -> tuple[str, Fault]:
    choices: list[tuple[str, Callable[[], Fault]]] = [
        ("500", lambda: Fault(status=500)),
        ("502-html", lambda: Fault(status=502, body="<html>Bad Gateway</html>")),
        ("503-executed", lambda: Fault(status=503, execute=True)),
        ("dropped", lambda: Fault(drop=True)),
        ("timeout", lambda: Fault(delay_s=1.3)),
        ("429", lambda: Fault(status=429, retry_after=rng.choice([30, 120, 600]))),
        ("418", lambda: Fault(status=418, retry_after=rng.choice([120, 300]))),
        ("-1021", lambda: Fault(status=400, code=-1021)),
        ("-1022", lambda: Fault(status=400, code=-1022)),
        ("-2015", lambda: Fault(status=401, code=-2015)),
        ("451", lambda: Fault(status=451)),
        ("-21001", lambda: Fault(status=400, code=-21001)),
        ("time-500", lambda: Fault(path=SERVER_TIME, status=500)),
    ]
    name, make = rng.choice(choices)
    return name, make()


def inject_faults(exchange: Any, rng: random.Random, stop: threading.Event, injected: Counter[str]) -> None:
    """One fault at a time, each after 0-4 clean collection requests: about a third of the requests fail."""
    seen, gap = 0, 0
    while not stop.wait(0.02):
        sent = len(exchange.requests(AUTO_COLLECTION_PATH))
        if exchange.pending_faults(AUTO_COLLECTION_PATH) or sent - seen < gap:
            continue
        name, fault = fault_menu(rng)
        if fault.path != AUTO_COLLECTION_PATH and exchange.pending_faults(fault.path):
            continue  # a server-time fault waits for a resync; one is enough
        exchange.inject(fault)
        injected[name] += 1
        seen, gap = sent, rng.randint(0, 4)


# --- the test ---------------------------------------------------------------------------------------------


def key_material(deployment: Any, exchange: Any) -> set[str]:
    pem = deployment.private_pem
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    signatures = {r.signature for r in exchange.requests() if r.signature}
    return {deployment.api_key, body} | signatures | {quote(s, safe="") for s in signatures}


@pytest.mark.timeout(3_600)
def test_soak(
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    dynamodb_local: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    invocations = soak_invocations()
    if invocations is None:
        pytest.skip("set SOAK_INVOCATIONS (CI runs a short soak)")
    from auto_collector.store import CollectorTable
    from localdev.exchange_emulator import ExchangeEmulator
    from tests.support.deployment import deploy

    processes = _int_env("SOAK_PROCESSES", 4)
    budget = _int_env("SOAK_BUDGET", 10)
    scale = _int_env("SOAK_TIME_SCALE", 600)
    seed = _int_env("SOAK_SEED", random.randrange(1_000_000))
    origin_ns = time.time_ns()

    def fast_clock_ms() -> int:
        return (origin_ns + (time.time_ns() - origin_ns) * scale) // 1_000_000

    rng = random.Random(seed)
    with ExchangeEmulator(clock_ms=fast_clock_ms, hourly_limit=budget) as exchange:
        deployment = deploy(monkeypatch, exchange, dynamodb_local.endpoint, moto_endpoint)
        environment = worker_environment() | {
            "MAX_CALLS_PER_HOUR": str(budget),
            "RECV_WINDOW_MS": "60000",  # 100 ms of real latency at the default scale
            "HTTP_TIMEOUT_SECONDS": "1",
        }
        context = multiprocessing.get_context("spawn")
        start, results = context.Event(), context.Queue()
        shares = [invocations // processes + (1 if i < invocations % processes else 0) for i in range(processes)]
        logs = [tmp_path / f"worker-{i}.log" for i in range(processes)]
        workers = [
            context.Process(
                target=soak_worker,
                args=(
                    environment,
                    origin_ns,
                    scale,
                    HOST_SKEWS_MS[i % len(HOST_SKEWS_MS)],
                    shares[i],
                    seed * 100 + i,
                    str(logs[i]),
                    start,
                    results,
                ),
            )
            for i in range(processes)
        ]
        for worker in workers:
            worker.start()
        injected: Counter[str] = Counter()
        stop = threading.Event()
        chaos = threading.Thread(target=inject_faults, args=(exchange, rng, stop, injected), daemon=True)
        started = time.monotonic()
        start.set()
        chaos.start()
        outcomes = [results.get(timeout=120 + invocations) for _ in workers]
        duration = time.monotonic() - started
        stop.set()
        chaos.join(timeout=5)
        for worker in workers:
            worker.join(timeout=30)
        pending = len(exchange.pending_faults())

        statuses = sum((Counter(s) for s, _ in outcomes), Counter())
        unexpected = [error for _, errors in outcomes for error in errors]
        records = CollectorTable(deployment.dynamodb, deployment.table).outcomes("default")
        # The window the function spends: the account's (identity.py).
        stored = CollectorTable(deployment.dynamodb, deployment.table).read(deployment.window_key)
        sent = exchange.requests(AUTO_COLLECTION_PATH)
        most = exchange.max_counted_in_any_window()
        summary = (
            f"soak: {invocations} invocations, {processes} processes, {duration:.1f} s "
            f"(time x{scale}, {duration * scale / 3600:.1f} h of exchange time), budget {budget}/h, "
            f"{sum(injected.values())} faults injected ({sum(injected.values()) - pending} hit), "
            f"{len(sent)} collection requests, {exchange.accepted_collections()} accepted (executed), "
            f"{sum(r.counted for r in sent)} counted, max {most} in any hour, "
            f"{len(exchange.violations())} violations; statuses {dict(sorted(statuses.items()))}; "
            f"faults {dict(sorted(injected.items()))}; seed {seed}"
        )
        with capsys.disabled():
            print("\n" + summary)

        assert unexpected == [], "exceptions escaped the collector (no outcome recorded)"
        assert exchange.violations() == []
        assert most <= budget
        assert exchange.internal_errors() == []
        assert sum(statuses.values()) == invocations
        assert len(records) == invocations, "every invocation leaves exactly one outcome record"
        assert len({r["invocationId"] for r in records}) == invocations
        reservations = sorted(n for record in records for n in record["reservations"])
        assert reservations == list(range(stored.sequence)), "each reservation used by exactly one attempt"
        assert_each_event_reserved_once(records)
        assert_no_key_material(logs, key_material(deployment, exchange), invocations)


def assert_each_event_reserved_once(records: list[dict[str, Any]]) -> None:
    """Two invocations may reserve for the same event id only once the first has been forgotten (3 h)."""
    by_event: dict[str, list[tuple[int, int]]] = {}
    for record in records:
        stamps = [attempt["timestampMs"] for attempt in record["attemptLog"]]
        if record["eventId"] and stamps:
            by_event.setdefault(record["eventId"], []).append((min(stamps), max(stamps)))
    margin_ms = 5 * 60_000  # host clocks disagree by up to a couple of minutes before a resync
    for event_id, spans in by_event.items():
        spans.sort()
        for (_, first_last), (second_first, _) in itertools.pairwise(spans):
            assert second_first - first_last >= EVENT_MEMORY_MS - margin_ms, f"{event_id} reserved twice"


def assert_no_key_material(logs: list[Path], material: set[str], invocations: int) -> None:
    lines = [line for path in logs for line in path.read_text().splitlines()]
    finished = ('"message":"invocation finished: ', '"message":"nothing sent: ', '"message":"collection failed"')
    assert sum(any(mark in line for mark in finished) for line in lines) == invocations  # one line each
    text = "\n".join(lines)
    leaked = sorted(f"{value[:6]}... ({len(value)} chars)" for value in material if value in text)
    assert leaked == [], "key material in the workers' logs"
