"""One cold start, run in a fresh interpreter by the benchmark: import the code under test, invoke it once.

    python cold_child.py MODE DONE_FD PATHS

MODE is `handler` (auto_collector.handler.lambda_handler with the console event {}) or `raw` (bench.raw).
PATHS (os.pathsep-separated) go first on sys.path. When the invocation is done this writes one line to the
file descriptor DONE_FD: "ok <status> <import ms> <invoke ms> <peak RSS KiB> <CPU ms>" (or "error ..."); the
parent stops its clock on that line, so interpreter shutdown is not counted. Only the standard library is
imported before the code under test.
"""

import os
import sys
import time

_started = time.perf_counter()


class _Context:
    """The attributes of Lambda's context object that Powertools and the handler read."""

    function_name = "FundAutoCollector-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:000000000000:function:FundAutoCollector-bench"
    log_group_name = "/aws/lambda/FundAutoCollector-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = f"bench-{os.getpid()}-{time.time_ns()}"
        self._deadline = time.monotonic() + 60

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _peak_rss_kb() -> int:
    """This process image's peak resident set (VmHWM). ru_maxrss is no good here: on Linux a child's
    ru_maxrss starts at its parent's resident set size, recorded when exec replaces the forked copy."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    mode, done_fd, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    script_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in paths.split(os.pathsep) if p] + [p for p in sys.path if p not in ("", script_dir)]
    try:
        if mode == "handler":
            from auto_collector.handler import lambda_handler

            imported = time.perf_counter()
            result = lambda_handler({}, _Context())
            status = str(result.get("status"))
        else:
            from bench.raw import RawCollector

            imported = time.perf_counter()
            status = RawCollector().invoke()
        done = time.perf_counter()
        cpu_ms = time.process_time() * 1000
        import_ms, invoke_ms = (imported - _started) * 1000, (done - imported) * 1000
        line = f"ok {status} {import_ms:.1f} {invoke_ms:.1f} {_peak_rss_kb()} {cpu_ms:.1f}\n"
    except Exception as error:  # reported to the parent, which fails the benchmark with it
        line = f"error {type(error).__name__}: {error}".replace("\n", " ") + "\n"
    os.write(done_fd, line.encode())
    os.close(done_fd)


main()
