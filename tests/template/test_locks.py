"""The locks agree with the ranges they were resolved from (`make lock`, scripts/lock.sh), offline.

An edited requirements*.txt or lambda-runtime.txt without a new lock fails here, before `sam build` or CI
install something else than what the ranges say. Resolving itself needs PyPI, so it is not run here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from localdev.artifact import RUNTIME_ONLY

REPO = Path(__file__).resolve().parents[2]
ARTIFACT_LOCK = REPO / "handler" / "requirements.txt"
RUNTIME_LOCK = REPO / "lambda-runtime.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
#: RUNTIME_ONLY are import names; these are their distributions.
RUNTIME_ONLY_DISTRIBUTIONS = {"boto3", "botocore", "s3transfer", "python-dateutil", "six"}


def _inputs(path: Path) -> list[Requirement]:
    """The requirements of a human-edited file, following `-r` includes."""
    requirements = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            requirements += _inputs(path.parent / line.removeprefix("-r ").strip())
            continue
        requirements.append(Requirement(line))
    return requirements


def _pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a generated lock; every pin has at least one hash."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", path.read_text().split("\n", 2)[2]):
        match = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", entry)
        if match is None:
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
        assert hashes, f"{path.name}: {match.group(1)} has no hash"
        pins[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    assert pins, f"{path.name} pins nothing"
    return pins


@pytest.mark.parametrize(
    ("inputs", "lock", "left_out"),
    [
        ("requirements.txt", ARTIFACT_LOCK, RUNTIME_ONLY_DISTRIBUTIONS),
        ("lambda-runtime.txt", RUNTIME_LOCK, set()),
        ("requirements-dev.txt", DEV_LOCK, set()),
    ],
)
def test_every_requirement_is_locked_within_its_range(inputs: str, lock: Path, left_out: set[str]) -> None:
    pins = _pins(lock)
    for requirement in _inputs(REPO / inputs):
        name = canonicalize_name(requirement.name)
        if name in left_out:
            assert name not in pins, f"{lock.name} must not pin {name}"
            continue
        assert name in pins, f"{name} ({inputs}) is not in {lock.name}: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.name} pins {name}=={version}, outside {requirement} ({inputs}): run `make lock`"
        )


def test_the_artifact_lock_leaves_the_sdk_to_the_runtime_and_matches_it() -> None:
    artifact, runtime = _pins(ARTIFACT_LOCK), _pins(RUNTIME_LOCK)
    assert not RUNTIME_ONLY_DISTRIBUTIONS & set(artifact)
    assert {"dateutil", "six", "boto3", "botocore", "s3transfer"} == set(RUNTIME_ONLY)
    # What both install (the artifact's copy shadows the runtime's, as in Lambda) was resolved together.
    for name in set(artifact) & set(runtime):
        assert artifact[name][0] == runtime[name][0], name
    assert "aws-xray-sdk" in artifact, "tracing needs it; it is installed without its botocore"
