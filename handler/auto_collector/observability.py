"""The service name every logger and the metrics share.

Powertools child loggers only reach the handler's log output when their service matches the parent's,
so every module takes the name from here (the template sets POWERTOOLS_SERVICE_NAME to the stack name).
"""

from __future__ import annotations

import os

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "fund-auto-collector"
