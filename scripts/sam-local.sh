#!/usr/bin/env bash
# `make sam-local`: every file in events/ through `sam local invoke`, SAM's own container path, on this machine.
#   1. installs what is missing (docker.io, debootstrap from apt; the SAM CLI into .venv-tools);
#   2. starts dockerd if none is running (and stops it again at the end);
#   3. builds or reuses a Lambda-like python3.12 image (recipe: localdev/lambda-image/), as no registry is used;
#   4. builds the artifact for this machine's architecture (the template says arm64; the copy built here
#      differs only in Architectures, and template.yaml itself is never changed);
#   5. starts moto's server and the exchange emulator on the docker0 gateway address only (localdev/sam_local.py),
#      which creates the table from template.yaml and the secret and writes the --env-vars file;
#   6. invokes every events/ file, then the scheduled event a second time (a repeated delivery), printing each
#      status; stops the services, which print what the exchange received and the table's outcome records.
# Traffic stays between the containers and this machine's docker0 bridge. Exits non-zero when an invocation
# fails or Docker cannot start. Logs: .cache/sam-local/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE=.cache/sam-local
export PYENV_VERSION=${PYENV_VERSION:-3.11.7:3.12.1:3.13.0}
mkdir -p .cache/sam-local

say() { echo "sam-local: $*"; }
fail() { echo "sam-local: FAILED: $*" >&2; exit 1; }

# ------------------------------------------------------------------ 1. what is missing
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v ip >/dev/null || missing+=(iproute2) # reads docker0's address
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || fail "needs ${missing[*]}; as root: apt-get install -y ${missing[*]}"
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  install=(apt-get install -y --no-install-recommends "${missing[@]}")
  if ! "${install[@]}" >"$STATE/apt.log" 2>&1 && ! { apt-get update && "${install[@]}"; } >>"$STATE/apt.log" 2>&1; then
    tail -n 20 "$STATE/apt.log" >&2; fail "apt-get install ${missing[*]}"
  fi
fi
[[ -x .venv/bin/python ]] || fail "no .venv: run this through 'make sam-local', which creates it"
scripts/check-template.sh --install-only # the SAM CLI, in .venv-tools

# One run at a time on a machine: they share dockerd, docker0 and the image.
exec 9>/tmp/fund-auto-collector-sam-local.lock
flock -n 9 || { say "waiting for another sam-local run to finish"; flock 9; }

dockerd_pid=
services_pid=
cleanup() {
  if [[ -n $services_pid ]] && kill -0 "$services_pid" 2>/dev/null; then
    kill -TERM "$services_pid"; wait "$services_pid" || true
  fi
  if [[ -n $dockerd_pid ]]; then
    say "stopping the dockerd started for this run"
    kill -TERM "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" || true
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ------------------------------------------------------------------ 2. dockerd
if ! docker info >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || fail "Docker cannot start on this machine: dockerd is not running, and only root may start it"
  say "starting dockerd (log: $STATE/dockerd.log)"
  dockerd >"$STATE/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    tail -n 20 "$STATE/dockerd.log" >&2
    fail "Docker cannot start on this machine (dockerd's log above, in full in $STATE/dockerd.log)"
  fi
fi

# ------------------------------------------------------------------ 3.-6. as in the README
image=$(localdev/lambda-image/build.sh)
arch=$(uname -m | sed 's/aarch64/arm64/')
sed "s/^\(    Architectures: \)\[arm64\]\$/\1[$arch]/" template.yaml >.cache/sam-local/template.yaml
grep -q "^    Architectures: \[$arch\]\$" .cache/sam-local/template.yaml || fail "no Architectures line in template.yaml"
say "sam build for $arch (log: $STATE/build.log)"
PLATFORM=manylinux2014_$(uname -m) .venv-tools/bin/sam build --template-file .cache/sam-local/template.yaml \
  --base-dir . --build-dir .aws-sam/sam-local >"$STATE/build.log" 2>&1 || { tail -n 30 "$STATE/build.log" >&2; fail "sam build"; }
# handler/Makefile takes the wheels' platform from PLATFORM: make sure they are this machine's.
foreign=$(grep -l '^Tag: .*linux' .aws-sam/sam-local/CollectorFunction/*.dist-info/WHEEL | xargs -r grep -L "$(uname -m)" || true)
[[ -z $foreign ]] || fail "the artifact has wheels for another architecture: $foreign"

gateway=$(ip -4 -o addr show dev docker0 | awk '{ split($4, address, "/"); print address[1]; exit }')
[[ -n $gateway ]] || fail "docker0 has no IPv4 address"
rm -f .cache/sam-local/env.json .cache/sam-local/summary.json
.venv/bin/python -m localdev.sam_local --host "$gateway" --env-vars .cache/sam-local/env.json --summary .cache/sam-local/summary.json &
services_pid=$!
for _ in $(seq 600); do
  [[ -f .cache/sam-local/env.json ]] && break
  kill -0 "$services_pid" 2>/dev/null || fail "the local services did not start"
  sleep 0.1
done
[[ -f .cache/sam-local/env.json ]] || fail "the local services did not start within 60 s"

export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=eu-west-1
failed=0
: >"$STATE/invoke.log"
for event in events/*.json events/scheduled.json; do
  .venv-tools/bin/sam local invoke CollectorFunction --template .aws-sam/sam-local/template.yaml \
    --event "$event" --env-vars .cache/sam-local/env.json \
    --invoke-image "$image" --skip-pull-image \
    --add-host host.docker.internal:host-gateway >"$STATE/response.json" 2>"$STATE/last-invoke.log" && rc=0 || rc=$?
  { echo "=== $event"; cat "$STATE/last-invoke.log" "$STATE/response.json"; } >>"$STATE/invoke.log"
  # sam prints the function's response as the last line on stdout; logs and the REPORT line on stderr.
  status=$(.venv/bin/python -c '
import json, sys
lines = [line for line in open(sys.argv[1]) if line.strip()]
response = json.loads(lines[-1]) if lines else {}
print(response.get("status") if isinstance(response, dict) and "errorType" not in response else "error")
' "$STATE/response.json" 2>/dev/null || echo "unreadable")
  duration=$(awk -F'\t' '/^REPORT/ { for (i = 1; i <= NF; i++) if ($i ~ /^Duration:/) { print $i; exit } }' \
    "$STATE/last-invoke.log")
  printf '%-24s %-17s %s\n' "$event" "$status" "${duration:-(no REPORT line)}"
  if ((rc != 0)) || [[ $status == error || $status == unreadable || $status == None ]]; then
    tail -n 20 "$STATE/last-invoke.log" >&2
    failed=1
  fi
done

kill -TERM "$services_pid"
wait "$services_pid" || failed=1
services_pid=
((failed == 0)) || fail "an invocation failed (every invocation's output: $STATE/invoke.log)"
