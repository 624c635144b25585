"""Facts about the `sam build` artifact that the packaging test and the benchmark both need."""

from __future__ import annotations

import re
from pathlib import Path


def native_distributions(artifact: Path) -> list[str]:
    """name==version of the artifact's distributions that ship compiled extensions (arm64 builds)."""
    native = []
    for dist_info in sorted(artifact.glob("*.dist-info")):
        record = dist_info / "RECORD"
        if record.is_file() and re.search(r"\.so,", record.read_text()):
            name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
            native.append(f"{name}=={version}")
    return native
