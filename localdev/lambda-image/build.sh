#!/usr/bin/env bash
# A local stand-in for Lambda's python3.12 base image (public.ecr.aws/lambda/python:3.12), made without an
# image registry, for `sam local invoke --invoke-image IMAGE --skip-pull-image` (scripts/sam-local.sh).
# SAM adds its own runtime interface emulator on top; this image supplies what the real one does beneath it:
#   /var/lang      CPython 3.12 (pyenv's build, relocated; LD_LIBRARY_PATH finds libpython in /var/lang/lib)
#   /var/runtime   awslambdaric (the official runtime interface client) and boto3, and the bootstrap
#   /var/task      the function's code (SAM mounts the artifact here, read-only)
# on a Debian bookworm minbase root file system (debootstrap, from the Debian mirror apt uses here).
#
# Prints the image name on stdout, progress on stderr. The name carries a hash of this directory (the recipe)
# and of the Python copied in: an unchanged recipe reuses the image, or rebuilds it from the root file system
# cached in .cache/lambda-image/ (docker import only); a changed one builds afresh. Needs root and docker.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE=$ROOT/.cache/lambda-image
SUITE=bookworm
# Shared libraries the standard library's extension modules load that minbase lacks (ssl, ctypes, sqlite3,
# pyexpat, readline); CA certificates as in the real image.
PACKAGES=libssl3,libffi8,libsqlite3-0,libexpat1,libreadline8,ca-certificates
export PYENV_VERSION=${PYENV_VERSION:-3.11.7:3.12.1:3.13.0}
PYTHON=python3.12

log() { echo "lambda-image: $*" >&2; }

command -v "$PYTHON" >/dev/null || { log "needs $PYTHON on PATH (pyenv install 3.12 and set PYENV_VERSION)"; exit 1; }
prefix=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
python_version=$("$PYTHON" -c 'import platform; print(platform.python_version())')
[[ -f $prefix/lib/libpython3.12.so.1.0 ]] || { log "$PYTHON at $prefix is not a shared-library build"; exit 1; }
arch=$(dpkg --print-architecture)
key=$( { cat "$HERE/build.sh" "$HERE/bootstrap" "$HERE/requirements.txt"; echo "$python_version $arch"; } |
  sha256sum | cut -c1-12)
# The hash is in the repository name, not only the tag: SAM names the image it builds on top
# "<repository>:rapid-<arch>" and would otherwise keep using one built from an older recipe.
repository=fund-auto-collector/lambda-python3.12-$key
image=$repository:latest
rootfs_tar=$CACHE/rootfs-$key.tar.gz

if docker image inspect "$image" >/dev/null 2>&1; then
  log "reusing $image"
  echo "$image"
  exit 0
fi

mkdir -p "$CACHE"
if [[ ! -f $rootfs_tar ]]; then
  # The Debian mirror apt uses on this machine (deb.debian.org when apt has no lists yet).
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(ORIGIN) $(LABEL) $(CODENAME)' 2>/dev/null |
    awk -v suite="$SUITE" '$2 == "Debian" && $3 == "Debian" && $4 == suite { print $1; exit }')
  mirror=${mirror:-http://deb.debian.org/debian/}
  rootfs=$(mktemp -d /var/tmp/lambda-rootfs.XXXXXX)
  build_log=$CACHE/build-$key.log
  cleanup() {
    # debootstrap mounts /proc and /sys in the tree; never delete through a mount left behind by a failure.
    findmnt -rn -o TARGET | grep "^$rootfs/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$rootfs" "$rootfs_tar.partial"
  }
  trap cleanup EXIT
  log "debootstrap --variant=minbase $SUITE from $mirror (about a minute; log: ${build_log#"$ROOT"/})"
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2; log "FAILED: debootstrap"; exit 1
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

  log "copying Python $python_version from $prefix to /var/lang"
  mkdir -p "$rootfs/var/lang/bin" "$rootfs/var/lang/lib" "$rootfs/var/runtime" "$rootfs/var/task" "$rootfs/opt"
  cp -p "$prefix/bin/python3.12" "$rootfs/var/lang/bin/python3.12"
  ln -s python3.12 "$rootfs/var/lang/bin/python3"
  ln -s python3.12 "$rootfs/var/lang/bin/python"
  cp -a "$prefix"/lib/libpython3.12.so* "$rootfs/var/lang/lib/"
  # The standard library without what a function never uses: its tests, IDLE, Tk, the static library,
  # and whatever pyenv's Python has installed for itself.
  tar -C "$prefix/lib" -c --exclude=python3.12/site-packages --exclude=python3.12/test \
    --exclude=python3.12/idlelib --exclude=python3.12/tkinter --exclude=python3.12/turtledemo \
    --exclude=python3.12/ensurepip --exclude='_tkinter.*' --exclude='*.a' python3.12 |
    tar -C "$rootfs/var/lang/lib" -x
  mkdir -p "$rootfs/var/lang/lib/python3.12/site-packages"

  log "installing $(grep -v '^#' "$HERE/requirements.txt" | xargs) into /var/runtime"
  if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile --only-binary=:all: \
    --target "$rootfs/var/runtime" -r "$HERE/requirements.txt" >>"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2; log "FAILED: pip install into /var/runtime"; exit 1
  fi
  rm -rf "$rootfs/var/runtime/bin"
  "$PYTHON" -m compileall -q -j0 -s "$rootfs" -p / "$rootfs/var/runtime" >>"$build_log"
  install -m 0755 "$HERE/bootstrap" "$rootfs/var/runtime/bootstrap"

  # The image must run what it was built for.
  if ! chroot "$rootfs" /usr/bin/env -i LD_LIBRARY_PATH=/var/lang/lib PYTHONPATH=/var/runtime \
    /var/lang/bin/python3.12 -c 'import awslambdaric, boto3, ssl, ctypes, sqlite3, pyexpat' >>"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2; log "FAILED: python3.12 in the new root file system"; exit 1
  fi

  tar -C "$rootfs" --numeric-owner -czf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
  # Root file systems of older recipes are never used again.
  find "$CACHE" -maxdepth 1 \( -name 'rootfs-*.tar.gz' -o -name 'build-*.log' \) \
    ! -name "rootfs-$key.tar.gz" ! -name "build-$key.log" -delete
fi

log "docker import ${rootfs_tar#"$ROOT"/} as $image"
docker import \
  --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:/etc/localtime' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
  "$rootfs_tar" "$image" >/dev/null
# Images of older recipes (and what SAM built on them) are never used again.
docker image ls --format '{{.Repository}}:{{.Tag}}' |
  grep '^fund-auto-collector/lambda-python3\.12-' | grep -v "^$repository:" | xargs -r docker image rm >/dev/null || true
echo "$image"
