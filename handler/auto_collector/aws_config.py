"""The botocore settings of the AWS clients this code builds."""

from __future__ import annotations

from botocore.config import Config

#: Bounded, quick AWS calls: throttling and transient errors are retried by botocore's standard mode,
#: and a stuck connection cannot eat the invocation's deadline.
BOUNDED_CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=1,
    read_timeout=3,
)
