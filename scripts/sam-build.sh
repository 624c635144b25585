#!/usr/bin/env bash
# `sam build` without Docker into .aws-sam/build, then check and report the function artifact.
# The function is built by handler/Makefile (BuildMethod: makefile), which needs a python3.12 on PATH matching
# the template's Runtime: pyenv provides it through PYENV_VERSION. Dependencies are fetched as manylinux
# aarch64 wheels (the function is arm64), and everything is compiled to bytecode for that Python.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS=.venv-tools
BUILD_DIR=.aws-sam/build
FUNCTION=CollectorFunction
ARTIFACT=$BUILD_DIR/$FUNCTION

export PYENV_VERSION=${PYENV_VERSION:-3.11.7:3.12.1:3.13.0}
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-eu-west-1} AWS_EC2_METADATA_DISABLED=true

runtime=$(sed -n 's/^ *Runtime: *\(python3\.[0-9]*\) *$/\1/p' template.yaml | head -n1)
[[ -n $runtime ]] || { echo "no python Runtime found in template.yaml" >&2; exit 1; }
if ! command -v "$runtime" >/dev/null 2>&1 || ! "$runtime" -c 'import pip' >/dev/null 2>&1; then
  echo "sam build needs $runtime (with pip) on PATH; with pyenv: pyenv install ${runtime#python} and set PYENV_VERSION" >&2
  exit 1
fi
scripts/check-template.sh --install-only

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$TOOLS/bin/sam" build --template-file template.yaml --build-dir "$BUILD_DIR" >"$log" 2>&1; then
  cat "$log"; echo "FAILED: sam build" >&2; exit 1
fi

# The artifact holds the auto_collector package and its runtime dependencies, nothing of the repository's
# development side.
[[ -f $ARTIFACT/auto_collector/__init__.py ]] || { echo "FAILED: $ARTIFACT has no auto_collector package" >&2; exit 1; }
for unwanted in tests bench localdev .venv .venv-tools events scripts template.yaml; do
  if [[ -e $ARTIFACT/$unwanted ]]; then echo "FAILED: $ARTIFACT contains $unwanted" >&2; exit 1; fi
done
# The Lambda runtime provides the AWS SDK (the lock leaves it out: scripts/lock.sh).
for provided in boto3 botocore s3transfer dateutil six; do
  if [[ -e $ARTIFACT/$provided ]]; then echo "FAILED: $ARTIFACT contains $provided (the Lambda runtime provides it)" >&2; exit 1; fi
done
if find "$ARTIFACT" -name 'test_*.py' -path '*/auto_collector/*' | grep -q .; then
  echo "FAILED: test modules inside $ARTIFACT/auto_collector" >&2; exit 1
fi
# Precompiled for the runtime's Python: without it every cold start compiles every module again.
version=${runtime#python}
pyc=$ARTIFACT/auto_collector/__pycache__/handler.cpython-${version/./}.pyc
[[ -f $pyc ]] || { echo "FAILED: no bytecode for $runtime in $ARTIFACT (expected $pyc)" >&2; exit 1; }

size=$(du -sh "$ARTIFACT" | cut -f1)
zipped=$(cd "$ARTIFACT" && "$runtime" - <<'PY'
import io, os, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk("."):
        for f in files:
            z.write(os.path.join(root, f))
print(f"{buf.tell() / 1048576:.1f}M")
PY
)
echo "built $ARTIFACT: $size unzipped, $zipped zipped ($(ls "$ARTIFACT" | wc -l) top-level entries)"
