"""The printed table, bench/RESULTS.md and its Cost paragraph, from the measured figures."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from typing import Any

from bench import ip_weight
from bench.harness import SAMPLE_GAP_MS, item_size_bytes
from localdev.template import load_template

# List prices (USD, us-east-1, as of 2025) used by the Cost paragraph.
INVOCATIONS_PER_MONTH = 8_640  # rate(5 minutes), 30 days
LAMBDA_GB_S = 0.0000133334  # arm64, per GB-second
LAMBDA_REQUEST = 0.20 / 1_000_000
MEMORY_GB = 0.25  # the template's 256 MB
DYNAMODB_WRU = 0.625 / 1_000_000  # on-demand, after the November 2024 price cut
DYNAMODB_STORAGE_GB = 0.25
DYNAMODB_PITR_GB = 0.20
SECRET_MONTH = 0.40
SECRET_CALL = 0.05 / 10_000
ALARM_MONTH = 0.10
KMS_KEY_MONTH = 1.00
CUSTOM_METRIC_MONTH = 0.30
LOG_INGEST_GB = 0.50
DASHBOARD_MONTH = 3.00  # the first 3 dashboards of an account are free
#: Metrics the success path publishes every invocation (handler.publish): the ones billed all month.
STEADY_METRICS = ("CollectionSucceeded", "ExchangeAttempts", "WindowUsage", "WindowLimit", "UsedIpWeight1m")


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    python312 = "-"
    try:
        env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.11.7:3.12.1:3.13.0")}
        python312 = (
            subprocess.run(["python3.12", "-V"], env=env, capture_output=True, text=True, check=False).stdout.strip()
            or "-"
        )
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python312": python312,
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _verdict(ratio: float, target: float) -> str:
    return "ok" if ratio <= target else "OVER"


def _aws(counts: dict[str, Any]) -> str:
    """'GetSecretValue 0, DynamoDB 2 (UpdateItem 1, PutItem 1)' from the proxy's X-Amz-Target counts."""
    secrets = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("secretsmanager.")}
    dynamo = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("DynamoDB_")}
    other = {k: v for k, v in counts.items() if not k.startswith(("secretsmanager.", "DynamoDB_"))}
    parts = [f"GetSecretValue {secrets.pop('GetSecretValue', 0)}"]
    parts += [f"{k} {v}" for k, v in secrets.items()]
    if all(isinstance(v, int) for v in dynamo.values()):
        inner = ", ".join(f"{k} {v}" for k, v in sorted(dynamo.items(), key=lambda kv: kv[0] != "UpdateItem"))
        parts.append(f"DynamoDB {sum(dynamo.values())}" + (f" ({inner})" if inner else ""))
    else:
        parts.append("DynamoDB " + ", ".join(f"{k} {v}" for k, v in dynamo.items()))
    parts += [f"{k} {v}" for k, v in other.items()]
    return ", ".join(parts)


def _dynamo_total(counts: dict[str, Any]) -> Any:
    values = [v for k, v in counts.items() if k.startswith("DynamoDB_")]
    return sum(values) if all(isinstance(v, int) for v in values) else "/".join(map(str, values))


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    cold = results.get("cold")
    if cold:
        c, b, s = cold["collector"], cold["baseline"], cold["collector_source"]
        ratio = c["wall_ms"] / b["wall_ms"]
        out.append(
            (
                f"Cold start: new interpreter, import + 1 invocation (median of {c['runs']}, interleaved)",
                f"{c['wall_ms']:.0f} ms",
                f"{b['wall_ms']:.0f} ms",
                f"{ratio:.2f}x",
                f"<= 1.15 {_verdict(ratio, 1.15)}",
            )
        )
        if "process_ms" in c:
            whole = c["process_ms"] / b["process_ms"]
            out.append(
                (
                    "Cold start as a whole process: spawn to exit, shutdown included (same runs)",
                    f"{c['process_ms']:.0f} ms",
                    f"{b['process_ms']:.0f} ms",
                    f"{whole:.2f}x",
                    f"<= 1.15 {_verdict(whole, 1.15)}",
                )
            )
            out.append(
                (
                    "  of which after the invocation returned (shutdown: atexit, threads, flushing)",
                    f"{c['process_ms'] - c['wall_ms']:.0f} ms",
                    f"{b['process_ms'] - b['wall_ms']:.0f} ms",
                    "",
                    "",
                )
            )
            out.append(
                (
                    "  CPU time of the whole process (user + sys, shutdown included)",
                    f"{c['process_cpu_ms']:.0f} ms",
                    f"{b['process_cpu_ms']:.0f} ms",
                    _ratio(c["process_cpu_ms"], b["process_cpu_ms"]),
                    "",
                )
            )
        out.append(
            (
                "  of which imports / the invocation",
                f"{c['import_ms']:.0f} / {c['invoke_ms']:.0f} ms",
                f"{b['import_ms']:.0f} / {b['invoke_ms']:.0f} ms",
                "",
                "",
            )
        )
        out.append(
            (
                "  CPU time of the process until then (user + sys)",
                f"{c['cpu_ms']:.0f} ms",
                f"{b['cpu_ms']:.0f} ms",
                _ratio(c["cpu_ms"], b["cpu_ms"]),
                "",
            )
        )
        out.append(
            (
                "  collector from source (its own modules not precompiled)",
                f"{s['wall_ms']:.0f} ms",
                f"{b['wall_ms']:.0f} ms",
                _ratio(s["wall_ms"], b["wall_ms"]),
                "",
            )
        )
        out.append(
            ("AWS requests, cold invocation (at the emulator)", _aws(c["aws"]), _aws(b["aws"]), "", "GetSecretValue 1")
        )
        out.append(
            (
                "Peak memory (VmHWM), cold invocation",
                f"{c['maxrss_mb']:.0f} MB (max {c['maxrss_mb_max']:.0f})",
                f"{b['maxrss_mb']:.0f} MB",
                _ratio(c["maxrss_mb"], b["maxrss_mb"]),
                f"< 128 MB {'ok' if c['maxrss_mb_max'] < 100 else 'TIGHT'}",
            )
        )
    warm = results.get("warm")
    if warm:
        c, b, r = warm["collector"], warm["baseline"], warm["collector_secret_reread"]
        ratio = c["median_ms"] / b["median_ms"]
        out.append(
            (
                f"Warm invocation (median of {c['n']}, one process, interleaved)",
                f"{c['median_ms']:.1f} ms",
                f"{b['median_ms']:.1f} ms",
                f"{ratio:.2f}x",
                f"<= 1.10 {_verdict(ratio, 1.10)}",
            )
        )
        out.append(("  p90", f"{c['p90_ms']:.1f} ms", f"{b['p90_ms']:.1f} ms", _ratio(c["p90_ms"], b["p90_ms"]), ""))
        # The reservation (one transaction: the account slot and the IP weight) and the outcome write.
        ok = c["aws"].get("secretsmanager.GetSecretValue", 0) == 0 and _dynamo_total(c["aws"]) <= 2
        out.append(
            (
                "AWS requests, warm invocation (at the emulator)",
                _aws(c["aws"]),
                _aws(b["aws"]),
                "",
                f"0 + <= 2 {'ok' if ok else 'OVER'}",
            )
        )
        out.append(("Exchange requests per invocation", str(c["exchange"]), str(b["exchange"]), "", ""))
        conn = warm["connections"]
        out.append(
            (
                f"Connections opened in the warm process ({conn['invocations']} invocations, 3 variants)",
                f"exchange {conn['exchange']}, AWS {conn['aws']}",
                "",
                "",
                "keep-alive reused",
            )
        )
        out.append(
            (
                "  warm, secret cache expired (SECRET_MAX_AGE_SECONDS=0)",
                f"{r['median_ms']:.1f} ms",
                f"{b['median_ms']:.1f} ms",
                _ratio(r["median_ms"], b["median_ms"]),
                _aws(r["aws"]),
            )
        )
    art = results.get("artifact")
    build = results.get("build")
    if art:
        p, c = art["plain"], art["compiled"]
        out.append(
            (
                f"Built artifact, python3.12 cold start: no bytecode vs compiled (median of {p['runs']})",
                f"{c['wall_ms']:.0f} ms compiled",
                f"{p['wall_ms']:.0f} ms plain",
                _ratio(c["wall_ms"], p["wall_ms"]),
                f"{p['wall_ms'] - c['wall_ms']:.0f} ms saved",
            )
        )
        if "process_ms" in c:
            out.append(
                (
                    "  as a whole process (spawn to exit)",
                    f"{c['process_ms']:.0f} ms",
                    f"{p['process_ms']:.0f} ms",
                    _ratio(c["process_ms"], p["process_ms"]),
                    "",
                )
            )
        out.append(
            (
                "  of which imports / the invocation",
                f"{c['import_ms']:.0f} / {c['invoke_ms']:.0f} ms",
                f"{p['import_ms']:.0f} / {p['invoke_ms']:.0f} ms",
                "",
                "",
            )
        )
        out.append(
            (
                "  CPU time of the process until then (user + sys)",
                f"{c['cpu_ms']:.0f} ms",
                f"{p['cpu_ms']:.0f} ms",
                _ratio(c["cpu_ms"], p["cpu_ms"]),
                "",
            )
        )
        out.append(
            (
                "  peak memory (VmHWM), python3.12",
                f"{c['maxrss_mb']:.0f} MB",
                f"{p['maxrss_mb']:.0f} MB",
                "",
                f"< 128 MB {'ok' if max(c['maxrss_mb_max'], p['maxrss_mb_max']) < 100 else 'TIGHT'}",
            )
        )
        out.append(
            (
                "Artifact size (sam build output, as shipped)",
                art["size"]["built"],
                f"{art['size']['plain']} without .pyc",
                "",
                f"{art['shipped_pyc']} .pyc shipped",
            )
        )
        if "runtime_only" in art:
            shipped = ", ".join(art["runtime_only"]) or "none"
            out.append(("  of the SDK the Lambda runtime provides (boto3, botocore ...)", shipped, "", "", "none"))
    elif build is not None and not build["ok"]:
        out.append(("Built artifact", "skipped: sam build failed", build["line"][:60], "", ""))
    sc = results.get("scale")
    if sc:
        one, many = sc["one_record"], sc["many_records"]
        same = one["aws"] == many["aws"]
        out.append(
            (
                f"Scale: warm invocation, {sc['records']['many_records']:,} vs {sc['records']['one_record']:,} "
                f"outcome records in the account (median of {one['n']})",
                f"{many['median_ms']:.1f} ms",
                f"{one['median_ms']:.1f} ms",
                _ratio(many["median_ms"], one["median_ms"]),
                "requests " + ("identical" if same else "DIFFER"),
            )
        )
        out.append(("  AWS requests per invocation", _aws(many["aws"]), _aws(one["aws"]), "", ""))
    ac = results.get("accounts")
    if ac:
        k = ac["accounts"]
        # Under the exchange's IP limit only `collected` of them send a collection; all of them write an outcome.
        collected = ac.get("collected", k)
        for key, title, sent in (
            ("exchange_latency", "100 ms on each exchange request", collected),
            ("all_latency", "100 ms on each exchange and AWS request", k),
        ):
            many, one = ac[key]["many"], ac[key]["one"]
            out.append(
                (
                    f"{k} accounts ({ac.get('statuses', 'collected')}) vs 1, warm, {title} (median of {one['n']})",
                    f"{many['median_ms']:.0f} ms",
                    f"{one['median_ms']:.0f} ms",
                    _ratio(many["median_ms"], one["median_ms"]),
                    f"not {sent}x",
                )
            )
            added_many = many["median_ms"] - ac["no_latency"]["many"]["median_ms"]
            added_one = one["median_ms"] - ac["no_latency"]["one"]["median_ms"]
            out.append(
                (
                    "  time the latency added (vs the same run without it)",
                    f"+{added_many:.0f} ms",
                    f"+{added_one:.0f} ms",
                    "",
                    f"one after another: +{sent * added_one:.0f} ms",
                )
            )
        none = ac["no_latency"]
        out.append(
            (
                "  no added latency (moto's own time per request bounds it)",
                f"{none['many']['median_ms']:.0f} ms",
                f"{none['one']['median_ms']:.0f} ms",
                _ratio(none["many"]["median_ms"], none["one"]["median_ms"]),
                "",
            )
        )
        out.append(
            (
                f"  AWS requests, {k} accounts vs 1",
                _aws(ac["exchange_latency"]["many"]["aws"]),
                _aws(ac["exchange_latency"]["one"]["aws"]),
                "",
                "",
            )
        )
    return out


def table(results: dict[str, Any]) -> str:
    header = ("Measure", "Collector", "Baseline", "Ratio", "Target / note")
    body = rows(results)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in body]
    return "\n".join(lines)


def _markdown_table(results: dict[str, Any]) -> str:
    header = ("Measure", "Collector", "Baseline", "Ratio", "Target / note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(results):
        cells = [cell.replace("|", "\\|") for cell in row]
        cells[0] = cells[0].replace("  ", "&nbsp;&nbsp;", 1) if cells[0].startswith("  ") else cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost(results: dict[str, Any]) -> str:
    """The Cost paragraph: requests per invocation and the monthly bill at rate(5 minutes)."""
    warm, cold = results.get("warm"), results.get("cold")
    if not warm or not cold:
        return "_Cost: needs the cold and warm scenarios._"
    template = load_template()
    alarms = sum(1 for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Alarm")
    dashboards = sum(1 for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Dashboard")
    n = INVOCATIONS_PER_MONTH
    # A scheduled run's event id stays in the window item for 3 hours (window.EVENT_MEMORY_MS) to refuse a
    # repeated delivery: 36 of them at rate(5 minutes), each an "event:<id>" attribute (the benchmark's console
    # events leave none, so their size is added here).
    uuid_text = "00000000-0000-0000-0000-000000000000"
    event_bytes = item_size_bytes(
        {f"event:{uuid_text}": {"M": {"invocationId": {"S": uuid_text}, "atMs": {"N": "1767225600000"}}}}
    )
    remembered = 36
    ring_bytes, outcome_bytes = warm["window_item"]["bytes_full_ring"], warm["outcome_item_bytes"]
    window_bytes = ring_bytes + remembered * event_bytes
    window_wru, outcome_wru = math.ceil(window_bytes / 1024), math.ceil(outcome_bytes / 1024)
    wru_warm = window_wru + outcome_wru
    wru_cold = wru_warm + window_wru  # a failed conditional write consumes the existing item's size too
    log_kb = cold["collector"]["log_bytes"] / 1024
    warm_s, cold_s = 0.3, 1.5
    lambda_low, lambda_high = n * MEMORY_GB * warm_s * LAMBDA_GB_S, n * MEMORY_GB * cold_s * LAMBDA_GB_S
    lambda_requests = n * LAMBDA_REQUEST
    dynamo_low, dynamo_high = n * wru_warm * DYNAMODB_WRU, n * wru_cold * DYNAMODB_WRU
    storage_gb = n * 3 * (outcome_bytes + 100) / 1e9  # 90 days of records, ~100 B of overhead per item
    storage = storage_gb * (DYNAMODB_STORAGE_GB + DYNAMODB_PITR_GB)
    secret_calls = n * SECRET_CALL
    logs = n * log_kb / 1024 / 1024 * LOG_INGEST_GB
    metrics = len(STEADY_METRICS) * CUSTOM_METRIC_MONTH
    alarm_cost = alarms * ALARM_MONTH
    variable_low = lambda_low + lambda_requests + dynamo_low + storage + secret_calls + logs
    variable_high = lambda_high + lambda_requests + dynamo_high + storage + secret_calls + logs
    fixed = SECRET_MONTH + KMS_KEY_MONTH + alarm_cost + metrics
    cw, cc, cr = warm["collector"]["aws"], cold["collector"]["aws"], warm["collector_secret_reread"]["aws"]
    return (
        f"**Cost.** Per invocation: a warm one {_aws(cw)} and one exchange request; a cold one {_aws(cc)} (a new "
        f"container's first reservation is tried on an empty view of the window, fails its condition and gets the "
        f"item back in that same call, so the second one wins). At the default schedule the 300 s secret cache "
        f"(SECRET_MAX_AGE_SECONDS) has usually expired by the next run, so a scheduled warm invocation makes "
        f"{_aws(cr)}. The default schedule, rate(5 minutes), is {n:,} invocations a month; list prices "
        f"(us-east-1, 2025, before free tiers): "
        f"**Lambda** {n:,} x 0.25 GB x {warm_s}-{cold_s} s billed x ${LAMBDA_GB_S:.10f}/GB-s = "
        f"${lambda_low:.3f}-{lambda_high:.3f} ({warm_s} s if every run is warm - the exchange round trip dominates a "
        f"real invocation; {cold_s} s if every run were a cold start, whose INIT is billed since August 2025), "
        f"plus {n:,} requests x $0.20/M = ${lambda_requests:.4f}; "
        f"**DynamoDB** on-demand writes at $0.625 per million WRU (the price since the November 2024 cut, used "
        f"here for most regions): the window item is ~{ring_bytes / 1024:.1f} KB once its 500-slot ring is full, "
        f"plus ~{remembered * event_bytes / 1024:.1f} KB for the {remembered} scheduled event ids it remembers "
        f"for 3 hours, so a reservation costs {window_wru} WRU and the outcome record (~{outcome_bytes / 1024:.1f} KB) "
        f"{outcome_wru}: {wru_warm} WRU a warm invocation, {wru_cold} a cold one = "
        f"${dynamo_low:.3f}-{dynamo_high:.3f}, plus ~{storage_gb * 1000:.0f} MB of outcome records kept 90 days "
        f"(storage and point-in-time recovery) ${storage:.3f}; no reads (BALANCE_CHECK off); "
        f"**Secrets Manager** $0.40 for the secret plus at most {n:,} GetSecretValue x $0.05/10k = "
        f"${secret_calls:.3f}; **CloudWatch** {alarms} alarms x $0.10 = ${alarm_cost:.2f}, "
        f"{len(STEADY_METRICS)} custom metrics that every successful run publishes x $0.30 = ${metrics:.2f} "
        f"(the other status counters cost only for the hours they occur in), logs ~{log_kb:.1f} KB an invocation "
        f"= ${logs:.3f} of ingestion, {dashboards} dashboard (free within an account's first 3, else $3); "
        f"**KMS** one customer-managed key (log group and alarm topic) $1.00. "
        f"**Total about ${fixed + variable_low:.2f}-{fixed + variable_high:.2f} a month**: ${fixed:.2f} of it is "
        f"fixed (key, secret, alarms, metrics); everything that scales with invocations is "
        f"${variable_low:.2f}-{variable_high:.2f}. Within the always-free tiers (Lambda 400,000 GB-s and 1M "
        f"requests; CloudWatch 10 metrics, 10 alarms, 5 GB of logs, 3 dashboards) the bill is the key and the "
        f"secret plus DynamoDB: about ${KMS_KEY_MONTH + SECRET_MONTH + secret_calls + dynamo_high + storage:.2f}."
    )


KEPT_MARKER = "<!-- Written by hand: make bench keeps everything from this line on. -->"


def kept_section(previous: str) -> str:
    """The hand-written end of an existing RESULTS.md (from KEPT_MARKER on), carried into the new one."""
    index = previous.find(KEPT_MARKER)
    return previous[index:].rstrip() + "\n" if index >= 0 else ""


def markdown(results: dict[str, Any], kept: str = "") -> str:
    m = results["machine"]
    size = results["size"]
    notes = [
        "- Everything runs in this one run against moto's server (DynamoDB, Secrets Manager) behind a counting "
        "proxy and the exchange emulator, all on 127.0.0.1. The baseline is `bench/raw.py`: the same clients and "
        "the same requests (GetSecretValue, an UpdateItem reservation of the same shape, an outcome PutItem with "
        "the same attributes, one Ed25519-signed POST) with plain boto3, requests and cryptography - no "
        "Powertools, no validation, no logs or metrics. Same request shapes, so moto's own cost per request is "
        "the same on both sides. Ratios, not absolute times: loopback hides the network time that dominates a "
        "real invocation, and other work on this shared 2-CPU machine moves single runs by 10-20 %, which is "
        "why every comparison is interleaved and taken as a median.",
        "- Cold start: wall time from spawning a fresh interpreter (`python -I -B`) to the end of its first "
        "invocation (console event `{}`), and to the process's exit (the whole process: what runs after the "
        "handler returned - atexit hooks, threads, the interpreter's own shutdown - counts there); the CPU time of "
        "the whole process is the child's rusage. Collector, collector-from-source and "
        f"baseline runs interleaved, {size['cold_runs']} each, after one unmeasured run each (so the account's "
        "window item exists, as in production). The collector's own modules are precompiled as the built "
        "artifact ships them; the source row shows the cost when they are not. The CPU time (user + system, "
        "until the invocation is done) is the steadier figure on a busy machine. Peak memory is the child's "
        "VmHWM (/proc/self/status): its ru_maxrss would start at the benchmark process's own resident size, "
        "which Linux records when exec replaces the forked copy.",
        f"- Warm: {size['warm_n']} invocations of each variant in one process, interleaved, after 5 warm-up "
        "invocations; the requests are counted at the proxy (AWS) and the emulator (exchange) around 10 further "
        "invocations each. A fresh account label per batch, MAX_CALLS_PER_HOUR=500; each collector variant has a "
        "table of its own (a deployment's IP-weight window lives in its table: variants sharing one would each "
        "find it changed by the other and reserve twice). The secret-cache row sets SECRET_MAX_AGE_SECONDS=0, "
        "which is what the default 300 s amounts to when runs are 5 minutes apart.",
        "- Limits: the exchange emulator keeps the exchange's real limits (12,000 IP weight a minute = 8 "
        "collections, 500 collections an hour per account) in every scenario. Instead of lifting them, simulated "
        f"time passes between samples: {SAMPLE_GAP_MS / 1000:g} s before each (more than the 66 s a request "
        "holds its IP weight), read by the emulator and the warm children alike (bench/simclock.py). A cold child "
        "reads the real clock, so for it the emulator's server time is set back by the same amount and the "
        "IP-window item's entries are removed, as the time would have expired them (see bench/harness.py).",
        "- Built artifact: `bash scripts/sam-build.sh` (sam build through handler/Makefile), copied, run with "
        "pyenv's python3.12 `-I -B`, sys.path = the artifact, then the runtime's SDK (`lambda-runtime.lock`, "
        "installed and compiled apart, as Lambda's /var/runtime); on x86_64 the artifact's arm64 extension "
        "distributions are replaced by the same versions for this machine, compiled or not along with the "
        "artifact. 'plain' = the artifact with every "
        "`__pycache__` removed, i.e. what SAM's default Python builder ships.",
        f"- Scale: {size['scale_records']:,} outcome records bulk-loaded with BatchWriteItem into one account's "
        "partition, 1 into another (compact records: the collector's keys, status, start time, TTL); warm "
        "invocations of both interleaved in one process.",
        f"- Accounts: {size['accounts']} accounts (ACCOUNTS, each with its own secret and key, registered with the "
        "emulator under its label) against one, first with no added latency, then 100 ms added to every "
        "auto-collection request by the emulator (a pure-delay fault), then also to every AWS request by the "
        "proxy. Under the IP's 12,000 weight a minute an invocation collects 8 of them and defers the rest (each "
        "invocation comes a simulated minute after the last, so it finds the minute free). 'Time the latency "
        "added' compares with the run without it: the 8 collections one after another would add 8 x what it adds "
        "to one account (all 50 accounts' AWS requests for the AWS latency). Without added latency the "
        "50-account invocation is bounded by moto: its requests all compete for the CPU of one Python process.",
    ]
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Measured {results['date']} with `{results['command']}` ({results['elapsed_s']:.0f} s).",
            "",
            f"Machine: {m['nproc']} CPUs ({m['cpu']}, {m['arch']}, Linux {m['kernel']}), Python {m['python']} "
            f"(main venv), {m['python312']} (artifact runs).",
            "",
            _markdown_table(results),
            "",
            "In the artifact, scale and accounts rows the two columns are the two sides the row names (compiled vs "
            "plain, 100,000 records vs 1, 50 accounts vs 1), not the raw baseline.",
            "",
            "## How it is measured",
            "",
            *notes,
            "",
            "## Cost",
            "",
            cost(results),
            "",
            *(
                [
                    ip_weight.markdown(
                        results["ip_weight"], results.get("date", ""), results.get("command", "make bench")
                    )
                ]
                if results.get("ip_weight")
                else []
            ),
            *([kept] if kept else []),
        ]
    )


if __name__ == "__main__":  # `python -m bench.report [--write]`: the last run's figures again
    import json

    from bench.harness import REPO

    data = json.loads((REPO / ".cache" / "bench" / "results.json").read_text())
    printed = table(data)
    print(printed)
    if "--write" in sys.argv[1:]:
        target = REPO / "bench" / "RESULTS.md"
        target.write_text(markdown(data, kept_section(target.read_text()) if target.exists() else ""))
        print(f"wrote {target}")
    sys.exit(0)
