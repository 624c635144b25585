#!/usr/bin/env bash
# Lint and validate template.yaml: cfn-lint, sam validate, sam validate --lint, checkov.
# Offline and credential-free. Creates .venv-tools (and .venv-tools/checkov) on first use.
# Prints one line per check; on failure prints that check's output and exits non-zero.
# --install-only: create/update the tool venvs and stop (scripts/sam-build.sh uses it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS=.venv-tools
CHECKOV_VENV=$TOOLS/checkov
REQS=requirements-tools.txt
TEMPLATE=${TEMPLATE:-template.yaml}
PYTHON=${PYTHON:-python3}

# No AWS credentials, no instance metadata look-ups, no telemetry, no Prisma Cloud downloads.
export AWS_DEFAULT_REGION=eu-west-1 AWS_REGION=eu-west-1
export AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Reinstall when requirements-tools.txt changed since the last install (a stamp holds its hash).
install_if_needed() { # venv, requirement args...
  local venv=$1 stamp=$1/.requirements.sha256; shift
  local want; want=$( { sha256sum "$REQS"; echo "$*"; } | sha256sum | cut -d' ' -f1)
  if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then return 0; fi
  echo "installing $* into $venv ..."
  [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    cat "$log"; echo "FAILED: installing $* into $venv" >&2; exit 1
  fi
  echo "$want" >"$stamp"
}

install_if_needed "$TOOLS" -r "$REQS"
checkov_req=$(sed -n 's/^# checkov-venv:[[:space:]]*//p' "$REQS")
[[ -n $checkov_req ]] || { echo "no '# checkov-venv:' line in $REQS" >&2; exit 1; }
install_if_needed "$CHECKOV_VENV" "$checkov_req"
[[ ${1:-} == --install-only ]] && exit 0

failed=0
check() { # name, command...
  local name=$1; shift
  if "$@" >"$log" 2>&1; then
    echo "ok   $name"
  else
    echo "FAIL $name"; sed 's/^/     /' "$log"; failed=1
  fi
}

# checkov reads conditions with the parameters' defaults, so resources of a non-default mode would go unchecked:
# each EgressMode is checked in a copy of the template whose defaults select it (ExistingVpc with sample ids),
# and the StaticIp copy also selects Mode=FanOut, so the fan-out resources are checked too.
variants=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$variants"' EXIT
with_default() { # parameter, value: sed program setting that parameter's Default
  echo "/^  $1:\$/,/^    Default:/ s|^    Default: .*|    Default: \"$2\"|"
}
sed -e "$(with_default EgressMode StaticIp)" -e "$(with_default Mode FanOut)" "$TEMPLATE" >"$variants/StaticIp.yaml"
sed -e "$(with_default EgressMode ExistingVpc)" -e "$(with_default VpcSubnetIds subnet-0123456789abcdef0)" \
  -e "$(with_default VpcSecurityGroupIds sg-0123456789abcdef0)" "$TEMPLATE" >"$variants/ExistingVpc.yaml"
for mode in StaticIp ExistingVpc; do
  grep -q "^    Default: \"$mode\"$" "$variants/$mode.yaml" || { echo "FAIL could not select EgressMode $mode"; failed=1; }
done
grep -q '^    Default: "FanOut"$' "$variants/StaticIp.yaml" || { echo "FAIL could not select Mode FanOut"; failed=1; }

for variant in "$TEMPLATE" "$variants/StaticIp.yaml" "$variants/ExistingVpc.yaml"; do
  label=""
  [[ $variant == "$TEMPLATE" ]] || label=" (EgressMode=$(basename "$variant" .yaml))"
  [[ $variant != "$variants/StaticIp.yaml" ]] || label=" (EgressMode=StaticIp, Mode=FanOut)"
  check "cfn-lint$label" "$TOOLS/bin/cfn-lint" "$variant"
  check "sam validate$label" "$TOOLS/bin/sam" validate --template-file "$variant" --region eu-west-1
  check "sam validate --lint$label" "$TOOLS/bin/sam" validate --lint --template-file "$variant" --region eu-west-1
  # --skip-download: no Prisma Cloud calls; --quiet: only failed checks are printed.
  check "checkov$label" "$CHECKOV_VENV/bin/checkov" --file "$variant" --framework cloudformation \
    --skip-download --quiet --compact
done

exit $failed
