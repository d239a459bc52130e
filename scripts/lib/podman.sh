# Podman for the pod tests (crates/podrun): installs podman and runc when missing and writes the
# containers.conf drop-in this kind of machine needs. Sourced, not run:
#
#   . scripts/lib/podman.sh && podman_setup
#
# Why each setting (see docs/kubernetes.md, "Try the manifests without a cluster"):
# - runtime = "runc": crun refuses the machine's hybrid cgroup layout.
# - cgroup_manager = "cgroupfs", events_logger = "file": there is no systemd to ask.
# - default_ulimits = []: the machine refuses raising RLIMIT_NOFILE, and podman's default
#   (nofile=1048576) makes every container fail to start.
# The drop-in only touches these keys; an existing /etc/containers/containers.conf stays.

# shellcheck source=scripts/lib/install.sh
. "$(dirname "${BASH_SOURCE[0]}")/install.sh"

PODMAN_CONF_DROPIN=/etc/containers/containers.conf.d/50-georep-pods.conf

podman_setup() {
  local missing
  missing=$(missing_packages podman:podman runc:runc catatonit:catatonit)
  # catatonit: podman builds its pod infra ("pause") image from it, locally (no registry).
  # Installed without recommends, podman networks through the CNI plugins (a dependency).
  # shellcheck disable=SC2086
  apt_install $missing
  if [ "$(id -u)" -ne 0 ]; then
    echo "georep: the pod tests run rootful podman; run them as root" >&2
    return 1
  fi
  mkdir -p "$(dirname "$PODMAN_CONF_DROPIN")"
  cat >"$PODMAN_CONF_DROPIN.tmp" <<'EOF'
# Written by georep's scripts/lib/podman.sh for the pod tests; safe to delete.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$PODMAN_CONF_DROPIN.tmp" "$PODMAN_CONF_DROPIN"
  # Fail here, with podman's own words, rather than in the middle of a test.
  local out
  if ! out=$(podman run --rm --network none --entrypoint /bin/true "$(podman_probe_image)" 2>&1); then
    echo "georep: podman is installed but cannot start a container:" >&2
    echo "$out" >&2
    return 1
  fi
}

# podman_probe_image: a one-file image (busybox-free: /bin/true from this machine) to check that
# containers start at all. Built once, kept as localhost/georep-probe:1.
podman_probe_image() {
  local image=localhost/georep-probe:1
  if ! podman image exists "$image"; then
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/bin" "$dir/lib"
    cp /bin/true "$dir/bin/true"
    local lib
    for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
      mkdir -p "$dir$(dirname "$lib")"
      cp -L "$lib" "$dir$lib"
    done
    tar -C "$dir" -c . | podman import -q - "$image" >/dev/null
    rm -rf "$dir"
  fi
  echo "$image"
}
