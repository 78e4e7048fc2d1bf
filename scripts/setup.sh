# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/test.sh: installs what podroutes needs on Debian
# (as root) and a virtualenv in .venv, doing nothing that is already done.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

APT_PACKAGES=(python3 python3-venv python3-pip openssh-server openssh-client iproute2
              iputils-ping iptables nftables procps util-linux
              systemd dbus ifupdown netplan.io tmux)

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "podroutes setup: run as root (the lab creates network namespaces and runs sshd)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${PODROUTES_APT_ALWAYS:-0}" = 1 ]; then
  say "installing system packages: ${missing[*]:-(refresh)}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

# nmcli, to validate NetworkManager keyfiles offline (nmcli --offline): unpacked from the
# Debian packages, never installed (installing network-manager would start NetworkManager,
# which would take over this machine's own interfaces).
NM_OFFLINE="$REPO/.venv/nm-offline"
if [ ! -x "$NM_OFFLINE/usr/bin/nmcli" ]; then
  say "unpacking nmcli (network-manager, libnm0) into $NM_OFFLINE; not installing it"
  nm_tmp="$(mktemp -d)"
  if ! (cd "$nm_tmp" && apt-get download -qq network-manager libnm0 2>/dev/null); then
    apt-get update -qq
    (cd "$nm_tmp" && apt-get download -qq network-manager libnm0 2>/dev/null)
  fi
  mkdir -p "$NM_OFFLINE"
  for deb in "$nm_tmp"/*.deb; do dpkg-deb -x "$deb" "$NM_OFFLINE"; done
  rm -rf "$nm_tmp"
fi

PY="${PODROUTES_PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "podroutes needs Python >= 3.11; $PY is $("$PY" --version 2>&1)" >&2
  exit 1
fi
stamp=".venv/.podroutes-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv and installing podroutes with its pinned dependencies"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
# Byte-compile the package once: this environment sets PYTHONDONTWRITEBYTECODE, so
# without it every podroutes start would compile its modules again (~0.1 s).
.venv/bin/python -m compileall -q src >/dev/null
export PATH="$REPO/.venv/bin:$PATH"
