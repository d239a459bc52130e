#!/usr/bin/env bash
# The seed's two-region deployment on one machine, with georep's tunnel as the spiped sidecar:
#
#   us-east-1:    redis-server (primary)  ◄── georep tunnel -d (the seed's sidecar, SPIPED_* env)
#   eu-central-1: redis-server (replica) ──► georep tunnel -e ══ encrypted ══► us-east-1
#
# It writes keys on the primary and shows them arriving on the replica, then prints replication
# status every second until Ctrl-C. `--once` stops after the first check (used by the tests).
# Everything lives in a temporary directory and every process it started is stopped on exit.
set -euo pipefail

once=false
[ "${1:-}" = "--once" ] && once=true

die() { echo "seed-demo: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "redis-server not found: sudo apt-get install -y redis-server redis-tools"
command -v redis-cli >/dev/null || die "redis-cli not found: sudo apt-get install -y redis-tools"

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${GEOREP_BIN:-}" ]; then
  echo "building georep (release)…"
  cargo build --release -q -p georep --manifest-path "$root/Cargo.toml"
  GEOREP_BIN="$root/target/release/georep"
fi

work=$(mktemp -d -t georep-seed-demo.XXXXXX)
pids=()
cleanup() {
  # SIGTERM first (graceful), SIGKILL whatever is still alive after 5 s.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=false
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=true; done
    $alive || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listening on port $1 (logs in $work)"
}

primary_port=$(free_port); replica_port=$(free_port)
wan_port=$(free_port); tunnel_client_port=$(free_port)

"$GEOREP_BIN" keygen "$work/tunnel.key" >/dev/null

for region in us-east-1 eu-central-1; do mkdir -p "$work/$region"; done
redis-server --port "$primary_port" --bind 127.0.0.1 --dir "$work/us-east-1" \
  --save "" --appendonly yes --repl-diskless-sync-delay 0 --daemonize no \
  >"$work/us-east-1/redis.log" 2>&1 &
pids+=($!)
# The seed's sidecar, configured exactly as its deployment.yaml does: by SPIPED_* variables.
SPIPED_KEY="$work/tunnel.key" SPIPED_MODE=d SPIPED_TIMEOUT=30 \
  SPIPED_SOURCE_SOCKET="[127.0.0.1]:$wan_port" SPIPED_TARGET_SOCKET="[127.0.0.1]:$primary_port" \
  "$GEOREP_BIN" tunnel 2>"$work/us-east-1/tunnel.log" &
pids+=($!)
"$GEOREP_BIN" tunnel -e -s "[127.0.0.1]:$tunnel_client_port" -t "[127.0.0.1]:$wan_port" \
  -k "$work/tunnel.key" 2>"$work/eu-central-1/tunnel.log" &
pids+=($!)
redis-server --port "$replica_port" --bind 127.0.0.1 --dir "$work/eu-central-1" \
  --save "" --appendonly yes --replicaof 127.0.0.1 "$tunnel_client_port" \
  --daemonize no >"$work/eu-central-1/redis.log" 2>&1 &
pids+=($!)
wait_port "$primary_port"; wait_port "$wan_port"; wait_port "$tunnel_client_port"; wait_port "$replica_port"

primary() { redis-cli -p "$primary_port" "$@"; }
replica() { redis-cli -p "$replica_port" "$@"; }

echo "us-east-1    primary  redis-cli -p $primary_port"
echo "eu-central-1 replica  redis-cli -p $replica_port  (replicates through the georep tunnel)"
echo
echo "writing 1000 keys on the primary…"
for i in $(seq 1 1000); do echo "SET demo:$i value-$i"; done | primary >/dev/null
primary SET demo:last "written at $(date +%T)" >/dev/null

for _ in $(seq 1 200); do
  [ "$(replica GET demo:last 2>/dev/null)" = "$(primary GET demo:last)" ] && break
  sleep 0.1
done
[ "$(replica GET demo:last)" = "$(primary GET demo:last)" ] || die "replica did not catch up (logs in $work)"
echo "replica has demo:last = \"$(replica GET demo:last)\" and $(replica DBSIZE) keys"

field() { tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }
status() {
  local p r
  p=$(primary INFO replication | field master_repl_offset)
  r=$(replica INFO replication | field slave_repl_offset)
  printf '%s  link=%s  primary_offset=%s  replica_offset=%s  lag_bytes=%s\n' \
    "$(date +%T)" "$(replica INFO replication | field master_link_status)" "$p" "$r" "$((p - r))"
}
status
$once && exit 0
echo "(Ctrl-C to stop; every process started here is stopped)"
while true; do
  sleep 1
  primary SET demo:last "written at $(date +%T)" >/dev/null
  status
done
