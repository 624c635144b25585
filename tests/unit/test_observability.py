"""Every module's log lines reach the handler's JSON output whatever the service name is set to."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROGRAM = """
import json
from auto_collector import handler  # configures the parent logger
from auto_collector import admission, collection, service
collection.logger.info("from collection")
service.logger.info("from service")
admission.logger.warning("from admission")
"""


def test_child_loggers_share_the_configured_service_name() -> None:
    environment = {**os.environ, "POWERTOOLS_SERVICE_NAME": "my-collector-stack", "PYTHONPATH": str(REPO / "handler")}
    output = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=environment, capture_output=True, text=True, check=True
    ).stdout
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [line["message"] for line in lines] == ["from collection", "from service", "from admission"]
    assert {line["service"] for line in lines} == {"my-collector-stack"}
