#!/usr/bin/env bash
# `make lock`: resolve the human-edited ranges into exact versions with hashes, from PyPI only.
#
#   requirements.txt + lambda-runtime.txt -> handler/requirements.txt  what `sam build` packages (handler/Makefile):
#                                            Python 3.12 on arm64 Linux, wheels only, and without the SDK the
#                                            Lambda runtime provides (boto3, botocore and what only they need)
#   lambda-runtime.txt                    -> lambda-runtime.lock       the runtime's SDK, for the artifact tests
#   requirements-dev.txt                  -> requirements-dev.lock     .venv (make, CI), any Python >= 3.11
#
# Run it after editing any of the inputs, or to take newer releases within the ranges; commit the results.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

UV=${UV:-.venv/bin/uv}
[[ -x $UV ]] || { echo "no $UV: run make (it installs uv into .venv from requirements-dev.lock)" >&2; exit 2; }
runtime=$(sed -n 's/^ *Runtime: *python\(3\.[0-9]*\) *$/\1/p' template.yaml | head -n1)
[[ -n $runtime ]] || { echo "no python Runtime found in template.yaml" >&2; exit 1; }

# --no-config: no uv.toml or pip.conf of this machine decides where packages come from.
compile=("$UV" pip compile --quiet --no-config --default-index https://pypi.org/simple --generate-hashes
  --no-strip-extras --custom-compile-command "make lock")

# Provided by the Lambda runtime (/var/runtime) and needed only by boto3/botocore. jmespath and urllib3 are
# also there, but Powertools and requests need them: they are packaged, at versions the runtime's botocore accepts.
provided=(boto3 botocore s3transfer python-dateutil six)
# pycparser is cffi's C parser for building bindings (ffi.cdef); PyNaCl ships its bindings prebuilt, and at run time
# they need only cffi's _cffi_backend extension module.
build_only=(pycparser)
"${compile[@]}" requirements.txt --constraints lambda-runtime.txt \
  --python-version "$runtime" --python-platform aarch64-manylinux2014 --only-binary :all: \
  "${provided[@]/#/--no-emit-package=}" "${build_only[@]/#/--no-emit-package=}" --output-file handler/requirements.txt
"${compile[@]}" lambda-runtime.txt --python-version "$runtime" --python-platform aarch64-manylinux2014 \
  --only-binary :all: --output-file lambda-runtime.lock
"${compile[@]}" requirements-dev.txt --universal --python-version 3.11 --output-file requirements-dev.lock
echo "locked: handler/requirements.txt, lambda-runtime.lock, requirements-dev.lock"
