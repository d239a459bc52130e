#!/usr/bin/env bash
# Builds the two images a rendered region's pod runs, locally, without a registry or a base
# image to pull, and tags them with the references `georep render k8s TOPOLOGY` puts in the
# StatefulSet (the topology's [kubernetes] image and redis_image):
#
#   georep image: the georep binary and the libraries `ldd` lists, laid out like distroless
#                 cc-debian12:nonroot (uid 65532, /tmp, passwd/group/nsswitch), ENTRYPOINT georep.
#   Redis image:  this machine's Debian redis-server and its libraries, laid out like the
#                 official image where the manifests depend on it (user redis = 999, /data).
#
# Usage: scripts/build-images.sh [--georep BIN] TOPOLOGY
#   --georep BIN  use this georep binary (e.g. target/debug/georep for tests) instead of
#                 building one with `cargo build --release -p georep`.
# Needs podman (scripts/lib/podman.sh installs it) and redis-server (Debian's redis-server).
# Prints the two references, georep's first.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 [--georep BIN] TOPOLOGY" >&2; exit 64; }
georep=""
topology=""
while [ $# -gt 0 ]; do
  case "$1" in
    --georep) [ $# -ge 2 ] || usage; georep=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) usage ;;
    *) [ -z "$topology" ] || usage; topology=$1; shift ;;
  esac
done
[ -n "$topology" ] || usage
command -v podman >/dev/null || { echo "podman is not installed: . scripts/lib/podman.sh && podman_setup" >&2; exit 1; }
redis_server=$(command -v redis-server) || { echo "redis-server is not installed: apt-get install redis-server" >&2; exit 1; }

if [ -z "$georep" ]; then
  cargo build --release --locked -p georep >&2
  georep="${CARGO_TARGET_DIR:-target}/release/georep"
fi
[ -x "$georep" ] || { echo "$georep is not an executable" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The image references, exactly as the renderer writes them: container name -> image, from the
# rendered StatefulSet of the first region (every region uses the same two images).
"$georep" render k8s "$topology" --out "$work/render" >/dev/null
statefulset=$(find "$work/render" -mindepth 2 -name statefulset.yaml | sort | head -n 1)
images=$(awk '
  /^      - / { if (name != "") print name, image; name = ""; image = "" }
  /^      [- ] image: / { image = $NF }
  /^      [- ] name: / { name = $NF }
  END { if (name != "") print name, image }' "$statefulset")
georep_image=$(awk '$1 == "georep-agent" { print $2 }' <<<"$images")
redis_image=$(awk '$1 == "redis" { print $2 }' <<<"$images")
if [ -z "$georep_image" ] || [ -z "$redis_image" ]; then
  echo "cannot find the images in $statefulset (containers: $images)" >&2
  exit 1
fi

# normalise REF: the reference as the kubelet's runtime reads it (a name without a registry is
# Docker Hub's, one path component is under library/), so podman never guesses a short name.
normalise() {
  local ref=$1 first=${1%%/*}
  if [ "$first" = "$ref" ]; then
    ref="docker.io/library/$ref"
  elif ! [[ $first == *.* || $first == *:* || $first == localhost ]]; then
    ref="docker.io/$ref"
  fi
  echo "$ref"
}
georep_image=$(normalise "$georep_image")
redis_image=$(normalise "$redis_image")

# copy_with_libs ROOT FILE [PATH]: FILE at PATH (default: the same path) in ROOT, and every
# library ldd lists for it at the path ldd gives.
copy_with_libs() {
  local root=$1 f=$2 at=${3:-$2} lib
  install -D -m 0755 "$f" "$root$at"
  for lib in $(ldd "$f" | grep -o '/[^ :]*' | sort -u); do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

# base_files ROOT: what every image needs from a distribution and nothing more.
base_files() {
  local root=$1
  mkdir -p "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/run"
  chmod 1777 "$root/tmp"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  [ -e /etc/ssl/certs/ca-certificates.crt ] &&
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  return 0
}

# import ROOT REF CHANGE...: the directory as a one-layer image.
import() {
  local root=$1 ref=$2
  shift 2
  local changes=()
  local c
  for c in "$@"; do changes+=(--change "$c"); done
  tar --numeric-owner -C "$root" -c . | podman import -q "${changes[@]}" - "$ref" >/dev/null
  echo "$ref"
}

# georep: like gcr.io/distroless/cc-debian12:nonroot.
g="$work/georep"
base_files "$g"
copy_with_libs "$g" "$georep" /usr/local/bin/georep
# Debug info stays out of the image (a dev build carries ~150 MB of it); the code is the same.
if command -v strip >/dev/null; then strip --strip-debug "$g/usr/local/bin/georep"; fi
cat >"$g/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$g/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
install -d -m 0700 "$g/root"
install -d -m 0700 -o 65532 -g 65532 "$g/home/nonroot"
import "$g" "$georep_image" \
  'USER 65532:65532' 'WORKDIR /home/nonroot' \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  'ENTRYPOINT ["/usr/local/bin/georep"]' 'CMD ["tunnel"]'

# Redis: the official image's user (redis, 999) and working directory (/data, owned by it).
# Its docker-entrypoint.sh only re-execs redis-server when already non-root, as the pod runs
# it, so the image has no entrypoint and `args` (redis-server …) is the command.
r="$work/redis"
base_files "$r"
copy_with_libs "$r" "$redis_server"
cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
redis:x:999:999::/home/redis:/usr/sbin/nologin
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
redis:x:999:
EOF
install -d -m 0755 -o 999 -g 999 "$r/data"
import "$r" "$redis_image" \
  'WORKDIR /data' 'EXPOSE 6379' \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'CMD ["redis-server"]'
echo "($redis_image holds this machine's $("$redis_server" --version | awk '{print $3}' | tr -d v=))" >&2
