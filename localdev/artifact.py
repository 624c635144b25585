"""Facts about the `sam build` artifact that the packaging test and the benchmark both need."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from localdev.template import REPO

#: The lock of the SDK the Lambda runtime provides (`make lock` from lambda-runtime.txt).
LAMBDA_RUNTIME_LOCK = REPO / "lambda-runtime.lock"
#: What the Lambda runtime provides on its sys.path and the artifact must therefore never ship.
RUNTIME_ONLY = ("boto3", "botocore", "s3transfer", "dateutil", "six")


def native_distributions(artifact: Path) -> list[str]:
    """name==version of the artifact's distributions that ship compiled extensions (arm64 builds)."""
    native = []
    for dist_info in sorted(artifact.glob("*.dist-info")):
        record = dist_info / "RECORD"
        if record.is_file() and re.search(r"\.so,", record.read_text()):
            name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
            native.append(f"{name}=={version}")
    return native


def runtime_only_entries(artifact: Path) -> list[str]:
    """The artifact's top-level packages, modules and distributions that belong to the runtime's SDK."""
    found = []
    for entry in artifact.iterdir():
        name = entry.name.removesuffix(".py")
        if entry.name.endswith(".dist-info"):
            name = entry.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("python_", "")
        if name in RUNTIME_ONLY:
            found.append(entry.name)
    return sorted(found)


def size_bytes(directory: Path) -> int:
    """Unzipped size: every regular file, bytecode included."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def lambda_runtime_sdk(python: str, cache: Path) -> Path:
    """A stand-in for the Lambda runtime's /var/runtime: the locked SDK installed for `python` (hashes checked),
    once per lock content, under `cache`. It goes on sys.path after the artifact, as in Lambda."""
    digest = hashlib.sha256(LAMBDA_RUNTIME_LOCK.read_bytes()).hexdigest()[:12]
    target = cache / f"lambda-runtime-{digest}"
    if target.is_dir():
        return target
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--require-hashes"]
    subprocess.run([*pip, "--only-binary=:all:", "--target", str(staging), "-r", str(LAMBDA_RUNTIME_LOCK)], check=True)
    # Lambda's runtime ships its SDK compiled; unchecked-hash, as the artifact is.
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", str(staging)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    staging.rename(target)
    return target
