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

cd "$root"
echo "building georep (release)…"
cargo build --release --locked -q -p georep
exec "$root/target/release/georep" up "$@"
