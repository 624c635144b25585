"""Many accounts behind one IP (issue 9): 100 accounts, one scheduled invocation a minute for a simulated hour.

The exchange allows an IP 12,000 request weight a minute and a collection weighs 1500: 8 collections a minute,
shared by every account. The collector holds each request's weight for recvWindow + 1 s + 60 s (ip_window.py;
66 s at the default recvWindow of 5000 ms), so at most 8 collections per 66 s = 7.27 a minute (7.68 at 1000 ms).
This scenario measures how close a deployment with 100 accounts (ACCOUNTS, MAX_CALLS_PER_HOUR 500, every other
setting at its default) comes on an EventBridge rate(1 minute) schedule, against the emulator's real limits;
bench/fan_out.py runs the same hour in the fan-out mode.

Time runs fast without being scaled: one warm container (a child process, `python -m bench.ip_weight CONFIG`)
reads the benchmark's shared simulated clock (bench/simclock.py) as `time.time_ns`, and `time.sleep(s)` moves
that clock on by `s` instead of waiting; between invocations the clock moves on to the next minute. The
emulator reads the same clock. So the work itself (DynamoDB, exchange requests, threads) runs at its real speed
and only the idle time is skipped. The collector's sleeps are waits for IP weight, which the fairness turnstile
(admission.Turnstile) makes one at a time. The one liberty: a request in flight on another thread while an
account sleeps sees the clock jump, where in real time it would have landed first; that can only make it look
later to the exchange (a -1021, reported with every other answer), never use less weight.
The Lambda context's remaining time follows the simulated clock (60 s, the template's Timeout).

Reported, from the emulator's request log (what the exchange saw) and the counting proxy (AWS): collections a
minute against 8, every 429/418 (there must be none), the most weight in any 60 s, how evenly the accounts were
served, the AWS requests per collection, and per tick when it collected and what the deferred accounts were told.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import Harness

MINUTE_MS = 60_000
#: The exchange's documented weights of the signed /sapi requests (the emulator charges the same).
WEIGHTS = {
    "/sapi/v1/portfolio/auto-collection": 1500,
    "/sapi/v1/portfolio/balance": 20,
    "/sapi/v1/portfolio/account": 5,
}
COLLECTION_PATH = "/sapi/v1/portfolio/auto-collection"
#: The warning admission.IpWeightGate.observe logs when it records weight the window did not know of.
OBSERVED_UNKNOWN_WEIGHT = "the exchange reports more IP weight than this deployment reserved"
#: The template's Timeout.
FUNCTION_TIMEOUT_MS = 60_000
#: How long the collector holds a request's IP weight: recvWindow + FUTURE_TOLERANCE_MS + 60 s
#: (handler/auto_collector/ip_window.py, window.py, config.py's default recvWindow).
FUTURE_TOLERANCE_MS, DEFAULT_RECV_WINDOW_MS = 1000, 5000
#: Lambda's limit on the total size of a function's environment variables.
LAMBDA_ENV_LIMIT_BYTES = 4096
#: The hour is run with the defaults, then with settings that only change how long an account may wait for IP
#: weight (IP_WEIGHT_MAX_WAIT_SECONDS, at most 30) and how long each request holds it (RECV_WINDOW_MS).
WHAT_IF: dict[str, dict[str, str]] = {
    "defaults": {},
    "wait 30 s": {"IP_WEIGHT_MAX_WAIT_SECONDS": "30"},
    "wait 30 s, recvWindow 1000 ms": {"IP_WEIGHT_MAX_WAIT_SECONDS": "30", "RECV_WINDOW_MS": "1000"},
}
#: The same hour in the fan-out mode (bench/fan_out.py): the defaults, then a shorter hold (recvWindow).
FAN_OUT: dict[str, dict[str, str]] = {
    "fan-out": {},
    "fan-out, recvWindow 1000 ms": {"RECV_WINDOW_MS": "1000"},
}


def run(h: Harness, code: Path, accounts: int = 100, minutes: int = 60, **function_env: str) -> dict[str, Any]:
    """One hour in the single-function mode."""
    return _run(h, code, accounts, minutes, False, function_env)


def run_fan_out(h: Harness, code: Path, accounts: int = 100, minutes: int = 60, **function_env: str) -> dict[str, Any]:
    """One hour in the fan-out mode (bench/fan_out.py)."""
    return _run(h, code, accounts, minutes, True, function_env)


def _run(
    h: Harness, code: Path, accounts: int, minutes: int, fan_out: bool, function_env: dict[str, str]
) -> dict[str, Any]:
    from bench.fan_out import QUEUE_URL

    batch = uuid.uuid4().hex[:4]
    labels = [f"ip{batch}-{i:03d}" for i in range(accounts)]
    fleet = json.dumps([{"label": label, "secretId": h.add_account(label)} for label in labels])
    env = h.env(ACCOUNTS=fleet, **function_env, **({"QUEUE_URL": QUEUE_URL} if fan_out else {}))
    env["PYTHONPATH"] = os.pathsep.join([str(code), str(Path(__file__).resolve().parent.parent)])
    out = h.work / f"ip-weight-{batch}.json"
    config = {"clock": str(h.clock.path), "minutes": minutes, "out": str(out), "fan_out": fan_out}
    config_path = out.with_suffix(".config.json")
    config_path.write_text(json.dumps(config))

    h.children_follow_clock()
    first_request = len(h.exchange.requests())
    aws_before = h.proxy.counts()
    started = time.perf_counter()
    name = "-".join([*(["fan-out"] if fan_out else []), *function_env.values()]) or "defaults"
    log_path = h.work / f"ip-weight-{name}.log"  # the function's logs
    with log_path.open("wb") as log:
        result = subprocess.run(
            [sys.executable, "-m", "bench.ip_weight", str(config_path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=h.work,
            check=False,
        )
    logged = log_path.read_text(errors="replace")
    tail = logged[-3000:]
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"ip-weight worker failed ({result.returncode}):\n{tail}")
    worker = json.loads(out.read_text())
    out.unlink()
    config_path.unlink()
    requests = [r for r in h.exchange.requests()[first_request:] if r.account in set(labels) or r.account is None]
    aws_after = h.proxy.counts()
    aws = {k: v - aws_before.get(k, 0) for k, v in aws_after.items() if v != aws_before.get(k, 0)}
    # The simulated queue's calls (fan-out): SQS bills each, so they count with the others.
    aws |= {f"SQS.{call}": count for call, count in worker.get("queue", {}).get("calls", {}).items()}
    summary = analyse(worker, requests, aws, labels)
    summary["mode"] = "fan-out" if fan_out else "single function"
    if fan_out:
        summary["queue"] = worker["queue"]
        durations = sorted(i["duration_ms"] / 1000 for i in worker["invocations"])
        summary["invocations"] = len(durations)
        summary["invocation_s"] = (
            {"median": statistics.median(durations), "max": durations[-1]} if durations else {"median": 0, "max": 0}
        )
        summary["aws_per_invocation"] = sum(aws.values()) / max(1, len(durations))
        summary["deferrals"] = sum(t["statuses"].get("deferred", 0) for t in worker["ticks"])
    recv_window_ms = int(function_env.get("RECV_WINDOW_MS", DEFAULT_RECV_WINDOW_MS))
    summary["held_s"] = (recv_window_ms + FUTURE_TOLERANCE_MS + MINUTE_MS) / 1000
    summary["real_s"] = time.perf_counter() - started
    # Weight the exchange reported beyond the window's, recorded as an entry (ip_window.observe): an UpdateItem.
    summary["observed_unknown_weight"] = logged.count(OBSERVED_UNKNOWN_WEIGHT)
    summary["log"] = str(log_path)
    summary["accounts_env_bytes"] = len("ACCOUNTS") + 1 + len(fleet)
    summary["function_env"] = function_env
    if h.exchange.internal_errors():
        raise RuntimeError(f"exchange emulator internal errors: {h.exchange.internal_errors()[:1]}")
    # Not a figure but the point of the IP-weight window: the exchange must never have refused a request.
    if summary["refused_429_418"]:
        refused = [f"{r.status} {r.code} at {r.received_ms}" for r in requests if r.status in (429, 418)]
        raise RuntimeError(f"the exchange answered 429/418 {len(refused)} times (see {log_path}): {refused[:5]}")
    if worker["unexpected"]:
        raise RuntimeError(f"exceptions escaped the collector (see {log_path}): {worker['unexpected'][:3]}")
    return summary


def analyse(worker: dict[str, Any], requests: list[Any], aws: dict[str, int], labels: list[str]) -> dict[str, Any]:
    ticks: list[dict[str, Any]] = worker["ticks"]
    start_ms = ticks[0]["at_ms"]
    minutes = len(ticks)
    end_ms = start_ms + minutes * MINUTE_MS

    statuses = Counter(f"{r.status}" + (f" {r.code}" if r.code is not None else "") for r in requests)
    refused = [r for r in requests if r.status in (429, 418)]
    executed = sorted((r.received_ms, r.account) for r in requests if r.path == COLLECTION_PATH and r.executed)
    sent = sum(1 for r in requests if r.path == COLLECTION_PATH)

    charged = sorted((r.received_ms, WEIGHTS[r.path]) for r in requests if r.path in WEIGHTS and r.status != 429)
    most, most_at, low, total = 0, start_ms, 0, 0
    for t, weight in charged:
        total += weight
        while charged[low][0] <= t - MINUTE_MS:
            total -= charged[low][1]
            low += 1
        if total > most:
            most, most_at = total, t

    per_tick = [0] * minutes
    first_in_tick: list[float | None] = [None] * minutes
    for t, _ in executed:
        k = (t - start_ms) // MINUTE_MS
        if 0 <= k < minutes:
            per_tick[k] += 1
            if first_in_tick[k] is None:
                first_in_tick[k] = (t - ticks[k]["at_ms"]) / 1000
    in_hour = sum(per_tick)

    by_account: dict[str, list[int]] = {label: [] for label in labels}
    for t, account in executed:
        by_account[account].append(t)
    counts = [len(times) for times in by_account.values()]
    gaps = [b - a for times in by_account.values() for a, b in itertools.pairwise(times)]
    firsts = [times[0] - start_ms for times in by_account.values() if times]
    # Longest time an account went uncollected, counting the start and the end of the hour as well.
    longest_without = max(
        max(b - a for a, b in itertools.pairwise([start_ms, *times, end_ms])) for times in by_account.values()
    )

    tick_rows = []
    for k, tick in enumerate(ticks):
        tick_rows.append(
            {
                "tick": k,
                "collected": per_tick[k],
                "first_collection_s": first_in_tick[k],
                "statuses": tick["statuses"],
                "duration_s": tick["duration_ms"] / 1000,
                "late_s": tick["late_ms"] / 1000,
                "deferred_wait_s": tick["deferred_wait_ms"] / 1000 if tick["deferred_wait_ms"] is not None else None,
                "errors": tick["errors"],
            }
        )
    idle_ticks = [row for row in tick_rows if row["collected"] == 0]
    # How much later in its tick each collecting tick began collecting than the tick before it did.
    drifts = [
        b["first_collection_s"] - a["first_collection_s"]
        for a, b in itertools.pairwise(tick_rows)
        if a["first_collection_s"] is not None and b["first_collection_s"] is not None
    ]
    aws_total = sum(aws.values())
    return {
        "accounts": len(labels),
        "minutes": minutes,
        "collections": in_hour,
        "collections_sent": sent,
        "per_minute": in_hour / minutes,
        "limit_per_minute": 12_000 // WEIGHTS[COLLECTION_PATH],
        "per_tick": dict(sorted(Counter(per_tick).items())),
        "idle_ticks": len(idle_ticks),
        "idle_ticks_needed_wait_s": [row["deferred_wait_s"] for row in idle_ticks],
        "exchange_statuses": dict(statuses),
        "refused_429_418": len(refused),
        "max_weight_60s": most,
        "max_weight_at_s": (most_at - start_ms) / 1000,
        "per_account": {"min": min(counts), "max": max(counts), "median": statistics.median(counts)},
        "accounts_never_collected": sum(1 for c in counts if c == 0),
        "longest_gap_s": max(gaps, default=0) / 1000,
        "median_gap_s": statistics.median(gaps) / 1000 if gaps else None,
        "longest_until_first_s": max(firsts, default=0) / 1000,
        "longest_without_s": longest_without / 1000,
        "aws": aws,
        "aws_per_collection": aws_total / in_hour if in_hour else None,
        "aws_per_invocation": aws_total / minutes,
        "invocation_s": {
            "median": statistics.median(row["duration_s"] for row in tick_rows),
            "max": max(row["duration_s"] for row in tick_rows),
        },
        "late_ticks": sum(1 for row in tick_rows if row["late_s"] > 0),
        "drift_s": statistics.median(drifts) if drifts else None,
        "failed_ticks": sum(1 for row in tick_rows if row["errors"]),
        "errors": [error for row in tick_rows for error in row["errors"]][:10],
        "ticks": tick_rows,
    }


# ------------------------------------------------------------------------------ the worker (a warm container)


class _Context:
    function_name = "FundAutoCollector-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:000000000000:function:FundAutoCollector-bench"
    log_group_name = "/aws/lambda/FundAutoCollector-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline_ns = time.time_ns() + FUNCTION_TIMEOUT_MS * 1_000_000  # the simulated clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, (self._deadline_ns - time.time_ns()) // 1_000_000)


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms / 1000))


def _epoch_ms(iso: str) -> int:
    import datetime

    return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def scheduled_event(at_ms: int) -> dict[str, Any]:
    """EventBridge's scheduled event for the tick at `at_ms`, a fresh id each."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": _iso(at_ms),
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/fund-auto-collector-bench"],
        "detail": {},
    }


def worker(config_path: str) -> int:
    from bench.simclock import SharedClock

    config = json.loads(Path(config_path).read_text())
    clock = SharedClock(Path(config["clock"]))
    clock.install(sleep=True)
    if config.get("fan_out"):
        from bench import fan_out

        Path(config["out"]).write_text(json.dumps(fan_out.worker(config, clock)))
        return 0
    from auto_collector.errors import CollectorError
    from auto_collector.handler import lambda_handler

    # A whole minute, as EventBridge's, and two minutes on: no weight of an earlier run is still held.
    first_ms = (math.ceil(clock.now_ms() / MINUTE_MS) + 2) * MINUTE_MS
    ticks = []
    unexpected: list[str] = []
    for k in range(config["minutes"]):
        at_ms = first_ms + k * MINUTE_MS
        late_ms = max(0, clock.now_ms() - at_ms)  # the previous invocation ran past this tick
        clock.advance_to_ns(at_ms * 1_000_000)
        event = scheduled_event(at_ms)
        begun = clock.now_ms()
        errors: list[str] = []
        summaries: list[dict[str, Any]] = []
        try:
            result = lambda_handler(event, _Context())
            summaries = result.get("accounts", [result])
        except CollectorError as error:
            errors.append(f"{type(error).__name__}: {error}"[:300])
        except Exception as error:  # escaped the collector: the parent fails the scenario with it
            unexpected.append(f"{type(error).__name__}: {error}"[:300])
            traceback.print_exc()
        deferred_until = [_epoch_ms(s["deferredUntil"]) for s in summaries if s.get("deferredUntil")]
        ticks.append(
            {
                "at_ms": at_ms,
                "late_ms": late_ms,
                "duration_ms": clock.now_ms() - begun,
                "statuses": dict(Counter(str(s["status"]) for s in summaries)),
                # How long the earliest deferred account would have had to wait for weight, from the tick.
                "deferred_wait_ms": min(deferred_until) - at_ms if deferred_until else None,
                "errors": errors,
            }
        )
    Path(config["out"]).write_text(json.dumps({"ticks": ticks, "unexpected": unexpected}))
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1]))


# ------------------------------------------------------------------------------ report


def _join(values: list[float]) -> str:
    if not values:
        return "none"
    low, high = min(values), max(values)
    return (
        f"{len(values)}, needing {low:.1f} s" if high - low < 0.05 else f"{len(values)}, needing {low:.1f}-{high:.1f} s"
    )


def rows(runs: dict[str, Any]) -> list[list[str]]:
    """Measure, one column per configuration run (WHAT_IF name -> `run` result), note."""
    results = list(runs.values())
    first = results[0]

    def row(title: str, cell: Callable[[dict[str, Any]], str], note: str = "") -> list[str]:
        return [title, *(cell(r) for r in results), note]

    def aws(r: dict[str, Any]) -> str:
        ordered = sorted(r["aws"].items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name.split('.', 1)[1]} {count}" for name, count in ordered)

    def queue(r: dict[str, Any], cell: Callable[[dict[str, Any]], str]) -> str:
        return cell(r) if "queue" in r else "-"

    return [
        row("Mode", lambda r: str(r.get("mode", "single function"))),
        row(
            "**Collections a minute**",
            lambda r: f"**{r['per_minute']:.2f}**",
            f"limit {first['limit_per_minute']} (12,000 weight / 1500); goal >= 7.5",
        ),
        row(
            "&nbsp;&nbsp;the most possible with each request's weight held (hold)",
            lambda r: f"{8 * 60 / r['held_s']:.2f} ({r['held_s']:g} s)",
            "8 per hold: recvWindow + 1 s + 60 s",
        ),
        row(
            "Collections in the hour" if first["minutes"] == 60 else f"Collections in {first['minutes']} minutes",
            lambda r: str(r["collections"]),
            "sent = executed at the emulator",
        ),
        row(
            "Ticks by collections in the tick",
            lambda r: ", ".join(f"{n}: {t}" for n, t in sorted(r["per_tick"].items(), key=lambda kv: -int(kv[0]))),
            f"{first['minutes']} ticks",
        ),
        row(
            "Ticks that collected nothing, and the wait for weight they would have needed",
            lambda r: _join([w for w in r["idle_ticks_needed_wait_s"] if w is not None]),
            "from the tick; deferred beyond IP_WEIGHT_MAX_WAIT_SECONDS",
        ),
        row(
            "Drift: each tick begins collecting later than the one before, by (median)",
            lambda r: f"{r['drift_s']:.2f} s" if r["drift_s"] is not None else "-",
            "hold - 60 s",
        ),
        row(
            "Refused by the exchange (HTTP 429 or 418)",
            lambda r: str(r["refused_429_418"]),
            "the emulator's log; all answers: HTTP "
            + " / ".join(", ".join(f"{k} x{v}" for k, v in r["exchange_statuses"].items()) for r in results),
        ),
        row("Most IP weight in any 60 s at the exchange", lambda r: f"{r['max_weight_60s']:,}", "limit 12,000"),
        row(
            "Collections per account: min / median / max; never collected",
            lambda r: (
                f"{r['per_account']['min']} / {r['per_account']['median']:g} / {r['per_account']['max']}; "
                f"{r['accounts_never_collected']}"
            ),
        ),
        row(
            "Longest gap between two collections of one account (median gap)",
            lambda r: f"{r['longest_gap_s'] / 60:.1f} min ({r['median_gap_s'] / 60:.1f})",
            f"{first['accounts']} accounts at 8 a minute: one turn every {first['accounts'] / 8:.1f} min",
        ),
        row(
            "Longest an account waited for its first collection",
            lambda r: f"{r['longest_until_first_s'] / 60:.1f} min",
        ),
        row(
            "AWS requests per collection (the hour's requests / collections)",
            lambda r: f"{r['aws_per_collection']:.1f}",
            "every deferral writes an outcome record (and in fan-out changes a visibility); fan-out counts the SQS "
            "calls, not the event source mapping's empty long polls",
        ),
        row(
            "&nbsp;&nbsp;per invocation",
            lambda r: f"{r['aws_per_invocation']:.0f}",
            "fan-out: per collector invocation",
        ),
        row("&nbsp;&nbsp;in the hour", aws),
        row(
            "Invocation time, median / max (simulated, waits for weight included)",
            lambda r: f"{r['invocation_s']['median']:.1f} / {r['invocation_s']['max']:.1f} s",
            f"Timeout {FUNCTION_TIMEOUT_MS // 1000} s; ticks begun while the previous one ran: "
            + " / ".join(str(r["late_ticks"]) for r in results),
        ),
        row(
            "Fan-out: collector invocations (batches of up to 10); deferrals handed back",
            lambda r: queue(r, lambda q: f"{q['invocations']}; {q['deferrals']}"),
            "one poller, one invocation at a time",
        ),
        row(
            "Fan-out queue: most messages; dropped by retention; dead-lettered; most receives of one message",
            lambda r: queue(
                r,
                lambda q: (
                    f"{q['queue']['most_messages']}; {q['queue']['dropped_by_retention']}; "
                    f"{q['queue']['dead_lettered']}; {max(map(int, q['queue']['receives_per_message']), default=0)}"
                ),
            ),
            "retention 300 s, maxReceiveCount 10 (template.yaml)",
        ),
        row(
            "Weight the exchange reported beyond the window's, recorded",
            lambda r: str(r.get("observed_unknown_weight", "-")),
        ),
        row(
            "Invocations that raised (an account failed)",
            lambda r: str(r["failed_ticks"]),
            "; ".join(dict.fromkeys(e.split(" - ", 1)[-1] for r in results for e in r["errors"]))[:400],
        ),
    ]


def markdown(runs: dict[str, Any], measured: str = "", command: str = 'make bench ARGS="--only ip-weight"') -> str:
    """The RESULTS.md section; `measured`: when (results.json's date), `command`: the run that measured it."""
    first = next(iter(runs.values()))
    header = ["Measure", *runs, "Note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows(runs)]
    return "\n".join(
        [
            "## Many accounts on one IP (issue 9)",
            "",
            f"{first['accounts']} accounts (ACCOUNTS) behind one IP, one scheduled invocation a minute "
            f"(EventBridge rate(1 minute), a fresh event id each) for {first['minutes']} simulated minutes, one warm "
            "container, the exchange emulator's real limits (12,000 IP weight a minute, 500 collections an hour "
            f"per account), MAX_CALLS_PER_HOUR 500. {f'Measured {measured} with ' if measured else ''}`{command}` "
            f"({sum(r['real_s'] for r in runs.values()):.0f} s for the {len(runs)} hours). Time is simulated, not "
            "scaled (bench/ip_weight.py): the work runs at its real speed on this machine, sleeps and the time "
            "between ticks are skipped, the emulator reads the same clock. The first column is the defaults; "
            "the fan-out columns run `Mode: FanOut` (bench/fan_out.py: the dispatcher each minute, a simulated SQS "
            "queue on the same clock, one poller feeding the collector batches of up to 10); "
            "the others change only settings a customer can change.",
            "",
            *lines,
            "",
        ]
    )


def table(runs: dict[str, Any]) -> str:
    header = ["Measure", *runs]
    body = [
        [row[0].replace("&nbsp;", " ").replace("**", ""), *(c.replace("**", "") for c in row[1:-1])]
        for row in rows(runs)
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [header, *body])
