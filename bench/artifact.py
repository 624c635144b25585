"""The built Lambda artifact: `sam build` (scripts/sam-build.sh), its size, and cold starts of it run the way
Lambda runs it - the runtime's Python (python3.12 from pyenv), isolated (`-I`), `-B` so nothing is compiled
to disk while measuring - with and without precompiled bytecode.

sys.path is what Lambda's is, in order: the artifact, then the runtime's own boto3 (lambda-runtime.lock,
installed for python3.12 and compiled, as Lambda's runtime ships it, for both variants). The artifact's
compiled extensions are for arm64 Linux; on another machine the same versions of those distributions, built
for this machine, go first on sys.path (as tests/template does), and they are compiled or not along with the
artifact they stand in for.
"""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from localdev.artifact import lambda_runtime_sdk, native_distributions, runtime_only_entries, size_bytes
from localdev.template import REPO

ARTIFACT = REPO / ".aws-sam" / "build" / "CollectorFunction"
PYENV_VERSION = "3.11.7:3.12.1:3.13.0"


@dataclass
class Prepared:
    python: str  # the real python3.12 executable
    plain: list[str]  # sys.path roots without any bytecode
    compiled: list[str]  # the same, compiled with compileall (unchecked-hash)
    shipped_pyc: int  # .pyc files in the artifact as sam build produced it
    size: dict[str, str]  # unzipped / zipped sizes, as built and without bytecode
    runtime_only: list[str]  # what the artifact ships of the SDK the Lambda runtime provides (should be nothing)


def build(log: Path) -> tuple[bool, str]:
    """Run scripts/sam-build.sh; (ok, its last line or the failure)."""
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", PYENV_VERSION)}
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "sam-build.sh")],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    lines = log.read_text().strip().splitlines()
    return result.returncode == 0, (lines[-1] if lines else "no output")


def prepare(work: Path) -> Prepared:
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", PYENV_VERSION)}
    python = subprocess.run(
        ["python3.12", "-c", "import sys; print(sys.executable)"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    root = work / "artifact"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    # A private copy: the measurement must not depend on a later build replacing .aws-sam under it.
    built = root / "built"
    shutil.copytree(ARTIFACT, built, symlinks=True)
    shipped_pyc = sum(1 for _ in built.rglob("*.pyc"))
    plain = root / "plain"
    shutil.copytree(built, plain, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    compiled = root / "compiled"
    shutil.copytree(plain, compiled, symlinks=True)
    _compile(python, compiled)
    size = {
        "built": _size(built),
        "plain": _size(plain),
        "compiled": _size(compiled),
    }

    roots_plain: list[str] = []
    roots_compiled: list[str] = []
    native = native_distributions(plain)
    if platform.machine() not in ("aarch64", "arm64") and native:
        shim = work / "host-native" / re.sub(r"[^A-Za-z0-9.=_-]", "_", "+".join(native))
        if not shim.exists():
            staging = shim.with_name(shim.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--no-compile",
                    "--only-binary=:all:",
                    "--target",
                    str(staging),
                    *native,
                ],
                env=env,
                check=True,
            )
            staging.rename(shim)
        shim_plain, shim_compiled = root / "native-plain", root / "native-compiled"
        shutil.copytree(shim, shim_plain, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(shim_plain, shim_compiled)
        _compile(python, shim_compiled)
        roots_plain.append(str(shim_plain))
        roots_compiled.append(str(shim_compiled))
    roots_plain.append(str(plain))
    roots_compiled.append(str(compiled))

    provided = lambda_runtime_sdk(python, work)  # compiled, as Lambda's runtime ships it
    roots_plain.append(str(provided))
    roots_compiled.append(str(provided))
    return Prepared(python, roots_plain, roots_compiled, shipped_pyc, size, runtime_only_entries(built))


def _compile(python: str, directory: Path) -> None:
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", str(directory)],
        check=False,  # a few vendored test files may not compile; everything importable does
        stdout=subprocess.DEVNULL,
    )


def _size(directory: Path) -> str:
    total = size_bytes(directory)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
    return f"{total / 1048576:.1f} MB unzipped, {buffer.tell() / 1048576:.1f} MB zipped"
