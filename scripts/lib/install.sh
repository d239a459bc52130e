# Shared by scripts/up.sh and scripts/test.sh: install what this machine lacks, or say exactly
# which command would, and stop. Sourced, not run.

# apt_install PACKAGE...: installs Debian packages with apt-get when we are root or have sudo
# without a password prompt; otherwise prints the exact command and exits 1.
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      echo "georep: this machine lacks $*; install them with:" >&2
      echo "    sudo apt-get install -y $*" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "georep: this machine lacks $* and has no apt-get; install them with its package manager" >&2
    exit 1
  fi
  echo "installing: $* (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# missing_packages CMD:PACKAGE...: prints the packages whose command is not on PATH.
missing_packages() {
  local pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || printf '%s\n' "${pair#*:}"
  done | sort -u
}
