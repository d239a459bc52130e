#!/usr/bin/env bash
# The README's first command: install what `georep up` needs (redis-server, redis-tools) when
# this machine lacks it, build georep, and bring up the seed's two regions on this machine.
# Arguments go to `georep up` (a topology file; default examples/aws-two-regions.toml).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"

mapfile -t missing < <(missing_packages redis-server:redis-server redis-cli:redis-tools)
apt_install "${missing[@]}"

if ! command -v cargo >/dev/null; then
  echo "georep: cargo is missing; install Rust (rustup, or the distribution's cargo) and run this again" >&2
  exit 1
fi
cd "$root"
echo "building georep (release)…"
cargo build --release --locked -q -p georep
# `exec`: Ctrl-C and a closed terminal reach `georep up` itself, which stops every process it
# started before it exits.
exec "$root/target/release/georep" up "$@"
